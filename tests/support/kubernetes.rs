//! The Kubernetes side, which no API server plays here: service-account tokens signed
//! with a key the test owns, the TokenReview API that checks them, and a stand-in API
//! server for the webhook's own calls ([`ApiServer`]: ServiceAccounts and pods, RBAC
//! enforced from the rendered manifests).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

/// Signs service-account-shaped JWTs with a key the test owns.
pub struct TokenSigner {
    key: jsonwebtoken::EncodingKey,
    pub public_pem: String,
}

impl TokenSigner {
    pub fn new() -> TokenSigner {
        let kp = rcgen::KeyPair::generate().unwrap();
        TokenSigner {
            key: jsonwebtoken::EncodingKey::from_ec_pem(kp.serialize_pem().as_bytes()).unwrap(),
            public_pem: kp.public_key_pem(),
        }
    }

    pub fn token(&self, ns: &str, sa: &str, aud: &str) -> String {
        self.token_for(ns, sa, aud, 600)
    }

    /// A token that expires `seconds` from now, as the kubelet's projected tokens do.
    pub fn token_for(&self, ns: &str, sa: &str, aud: &str, seconds: u64) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        self.token_between(ns, sa, aud, now, now + seconds)
    }

    /// A token that expired two minutes ago, as a stale projected token file holds.
    pub fn expired(&self, ns: &str, sa: &str, aud: &str) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        self.token_between(ns, sa, aud, now - 900, now - 120)
    }

    fn token_between(&self, ns: &str, sa: &str, aud: &str, now: u64, exp: u64) -> String {
        let claims = json!({
            "iss": "https://kubernetes.default.svc.cluster.local",
            "sub": format!("system:serviceaccount:{ns}:{sa}"),
            "aud": [aud],
            "iat": now,
            "nbf": now,
            "exp": exp,
            "kubernetes.io": {
                "namespace": ns,
                "serviceaccount": {"name": sa, "uid": "4e6c1f6a-5b8a-4a0e-9c55-0c8f3c0d7e11"},
                "pod": {"name": "app-7d9c-x2x4z", "uid": "9f0f3c1e-4b1e-4a1b-8b64-8f1b5e3d2a10"},
            },
        });
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
            &claims,
            &self.key,
        )
        .unwrap()
    }
}

/// A stand-in for the Kubernetes TokenReview API (no API server runs here), which
/// OpenBao's `kubernetes` auth calls: it verifies the token's signature with the test
/// signer's public key and answers as the API server would.
pub struct TokenReviewServer {
    pub port: u16,
    pub reviews: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl TokenReviewServer {
    pub async fn start(public_pem: &str) -> TokenReviewServer {
        use axum::Json;
        let key = jsonwebtoken::DecodingKey::from_ec_pem(public_pem.as_bytes()).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let reviews = Arc::new(AtomicUsize::new(0));
        let count = reviews.clone();
        let handler = move |Json(review): Json<Value>| {
            let key = key.clone();
            let count = count.clone();
            async move {
                count.fetch_add(1, Ordering::SeqCst);
                let token = review["spec"]["token"].as_str().unwrap_or_default();
                let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
                validation.validate_aud = false;
                let status = match jsonwebtoken::decode::<Value>(token, &key, &validation) {
                    Ok(data) => json!({
                        "authenticated": true,
                        "user": {
                            "username": data.claims["sub"],
                            "uid": data.claims["kubernetes.io"]["serviceaccount"]["uid"],
                            "groups": ["system:serviceaccounts"],
                        },
                        "audiences": data.claims["aud"],
                    }),
                    Err(e) => json!({"authenticated": false, "error": e.to_string()}),
                };
                Json(json!({
                    "apiVersion": "authentication.k8s.io/v1",
                    "kind": "TokenReview",
                    "status": status,
                }))
            }
        };
        let app = axum::Router::new().route(
            "/apis/authentication.k8s.io/v1/tokenreviews",
            axum::routing::post(handler),
        );
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        TokenReviewServer {
            port,
            reviews,
            task,
        }
    }
}

impl Drop for TokenReviewServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A request as RBAC sees it: the verb, the resource, and the namespace (`None` for a
/// request across all namespaces, which needs a cluster-wide grant).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Access {
    pub verb: String,
    pub resource: String,
    pub namespace: Option<String>,
}

impl Access {
    pub fn new(verb: &str, resource: &str, namespace: Option<&str>) -> Access {
        Access {
            verb: verb.to_string(),
            resource: resource.to_string(),
            namespace: namespace.map(str::to_string),
        }
    }

    /// Whether `grant` (a namespace of `None`: cluster-wide) allows this request.
    fn allowed_by(&self, grant: &Access) -> bool {
        (grant.verb == self.verb || grant.verb == "*")
            && (grant.resource == self.resource || grant.resource == "*")
            && (grant.namespace.is_none() || grant.namespace == self.namespace)
    }
}

/// What a ServiceAccount may do in the core API group ("") under the RBAC objects in
/// `docs` (rendered manifests), as the API server's RBAC authorizer decides it: a
/// ClusterRoleBinding grants its ClusterRole's rules cluster-wide, a RoleBinding grants
/// its Role's (or ClusterRole's) rules in the binding's namespace.
pub fn rbac_grants(docs: &[Value], namespace: &str, service_account: &str) -> Vec<Access> {
    let bound = |binding: &Value| {
        binding["subjects"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| {
                s["kind"] == "ServiceAccount"
                    && s["name"] == service_account
                    && s["namespace"] == namespace
            })
    };
    let role = |kind: &str, name: &Value, ns: Option<&Value>| {
        docs.iter()
            .find(|d| {
                d["kind"] == kind
                    && &d["metadata"]["name"] == name
                    && ns.is_none_or(|ns| &d["metadata"]["namespace"] == ns)
            })
            .unwrap_or_else(|| panic!("{kind} {name} is bound but not defined"))
    };
    let mut grants = Vec::new();
    for binding in docs.iter().filter(|d| bound(d)) {
        let scope = match binding["kind"].as_str() {
            Some("ClusterRoleBinding") => None,
            Some("RoleBinding") => Some(
                binding["metadata"]["namespace"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            ),
            _ => continue,
        };
        let role_ref = &binding["roleRef"];
        let role = match role_ref["kind"].as_str().unwrap() {
            "ClusterRole" => role("ClusterRole", &role_ref["name"], None),
            "Role" => role(
                "Role",
                &role_ref["name"],
                Some(&binding["metadata"]["namespace"]),
            ),
            other => panic!("roleRef kind {other}"),
        };
        for rule in role["rules"].as_array().unwrap() {
            assert_eq!(
                rule["apiGroups"],
                json!([""]),
                "the stand-in serves the core group only: {rule}"
            );
            assert!(
                rule.get("resourceNames").is_none(),
                "resourceNames are not modelled: {rule}"
            );
            for resource in rule["resources"].as_array().unwrap() {
                for verb in rule["verbs"].as_array().unwrap() {
                    grants.push(Access {
                        verb: verb.as_str().unwrap().to_string(),
                        resource: resource.as_str().unwrap().to_string(),
                        namespace: scope.clone(),
                    });
                }
            }
        }
    }
    grants
}

/// One request the stand-in API server answered.
#[derive(Clone, Debug)]
pub struct Seen {
    pub access: Access,
    /// Refused with 403 (RBAC) or 401 (no bearer token).
    pub refused: bool,
}

/// The kinds the stand-in serves (core API group, v1).
const KINDS: [(&str, &str); 2] = [("serviceaccounts", "ServiceAccount"), ("pods", "Pod")];

#[derive(Default)]
struct Objects {
    /// resource -> (namespace, name) -> the object as the API returns it.
    by_resource:
        std::collections::BTreeMap<String, std::collections::BTreeMap<(String, String), Value>>,
    resource_version: u64,
    /// Every change, for watches that start at an older resourceVersion.
    log: Vec<(u64, String, &'static str, Value)>,
}

struct ApiState {
    objects: std::sync::Mutex<Objects>,
    changes: tokio::sync::broadcast::Sender<(u64, String, &'static str, Value)>,
    /// `None`: every request allowed; otherwise RBAC as [`rbac_grants`] computed it.
    grants: std::sync::Mutex<Option<Vec<Access>>>,
    seen: std::sync::Mutex<Vec<Seen>>,
    token: String,
}

/// A stand-in for the Kubernetes API server (none runs here), for the webhook's own
/// calls, on the API's wire protocol: `GET /api/v1/<resource>` (all namespaces) and
/// `/api/v1/namespaces/<ns>/<resource>[/<name>]` for ServiceAccounts and Pods; lists
/// with `metadata.resourceVersion`; `watch=true` answered with a stream of JSON event
/// lines (`{"type":"ADDED","object":…}`), replayed from the requested
/// resourceVersion (`0`: synthetic ADDED events for every object) and closed after
/// `timeoutSeconds`; metadata-only answers (`PartialObjectMetadata[List]`) when the
/// Accept header asks for them, as kube-rs does; a bearer token required (401
/// otherwise); RBAC enforced when given ([`ApiServer::enforce`]: 403 Forbidden); and
/// errors as `Status` objects with the API server's messages.
pub struct ApiServer {
    pub url: String,
    state: Arc<ApiState>,
    task: tokio::task::JoinHandle<()>,
}

impl ApiServer {
    /// Start on a free loopback port, in the current tokio runtime.
    pub async fn start() -> ApiServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        ApiServer::serve(listener).await
    }

    /// Start on `listener` (a port chosen before, for example one a client already
    /// tries to reach).
    pub async fn serve(listener: tokio::net::TcpListener) -> ApiServer {
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(ApiState {
            objects: Default::default(),
            changes: tokio::sync::broadcast::channel(1024).0,
            grants: Default::default(),
            seen: Default::default(),
            token: "stand-in-token".to_string(),
        });
        let app = axum::Router::new().fallback({
            let state = state.clone();
            move |request: axum::extract::Request| {
                let state = state.clone();
                async move { answer(&state, request).await }
            }
        });
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        ApiServer { url, state, task }
    }

    /// Enforce RBAC: only what `grants` allows (see [`rbac_grants`]).
    pub fn enforce(&self, grants: Vec<Access>) {
        *self.state.grants.lock().unwrap() = Some(grants);
    }

    /// Every request answered so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    /// Create or replace an object (`ADDED` or `MODIFIED` for watchers). `object` needs
    /// `metadata.name` and `metadata.namespace`; kind, apiVersion, uid,
    /// resourceVersion and creationTimestamp are set as the API server sets them.
    pub fn put(&self, resource: &str, mut object: Value) {
        let kind = KINDS
            .iter()
            .find(|(r, _)| *r == resource)
            .expect("a served resource")
            .1;
        let ns = object["metadata"]["namespace"]
            .as_str()
            .unwrap()
            .to_string();
        let name = object["metadata"]["name"].as_str().unwrap().to_string();
        let mut objects = self.state.objects.lock().unwrap();
        objects.resource_version += 1;
        let rv = objects.resource_version;
        object["apiVersion"] = json!("v1");
        object["kind"] = json!(kind);
        let meta = &mut object["metadata"];
        meta["resourceVersion"] = json!(rv.to_string());
        meta["uid"] = json!(format!("00000000-0000-4000-8000-{rv:012}"));
        meta["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
        let slot = objects.by_resource.entry(resource.to_string()).or_default();
        let kind = if slot.insert((ns, name), object.clone()).is_some() {
            "MODIFIED"
        } else {
            "ADDED"
        };
        objects
            .log
            .push((rv, resource.to_string(), kind, object.clone()));
        let _ = self
            .state
            .changes
            .send((rv, resource.to_string(), kind, object));
    }

    /// A ServiceAccount with these annotations.
    pub fn put_service_account(&self, namespace: &str, name: &str, annotations: &[(&str, &str)]) {
        let annotations: serde_json::Map<String, Value> = annotations
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        self.put(
            "serviceaccounts",
            json!({"metadata": {"name": name, "namespace": namespace, "annotations": annotations}}),
        );
    }

    /// A kubeconfig that reaches this server with its bearer token, in `dir`.
    pub fn kubeconfig(&self, dir: &std::path::Path) -> std::path::PathBuf {
        write_kubeconfig(dir, &self.url, &self.state.token)
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A kubeconfig for `url` (`http://…`, as the stand-in serves) with a bearer token.
pub fn write_kubeconfig(dir: &std::path::Path, url: &str, token: &str) -> std::path::PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: stand-in\n  cluster: {{server: \"{url}\"}}\nusers:\n- name: webhook\n  user: {{token: {token}}}\ncontexts:\n- name: stand-in\n  context: {{cluster: stand-in, user: webhook, namespace: secret-injector-system}}\ncurrent-context: stand-in\n"
        ),
    )
    .unwrap();
    path
}

/// The API server's error object.
fn status(code: u16, reason: &str, message: String, details: Value) -> axum::response::Response {
    use axum::response::IntoResponse;
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason,
        "details": details, "code": code,
    });
    (
        axum::http::StatusCode::from_u16(code).unwrap(),
        axum::Json(body),
    )
        .into_response()
}

/// What the object looks like in an answer: whole, or its metadata only (as kube-rs's
/// `PartialObjectMeta` asks with `Accept: application/json;as=PartialObjectMetadata…`).
fn shaped(object: &Value, metadata_only: bool) -> Value {
    if metadata_only {
        json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": object["metadata"]})
    } else {
        object.clone()
    }
}

async fn answer(
    state: &Arc<ApiState>,
    request: axum::extract::Request,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let path = request.uri().path().to_string();
    let query: std::collections::HashMap<String, String> =
        url::form_urlencoded::parse(request.uri().query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let accept = request
        .headers()
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let metadata_only = accept.contains("as=PartialObjectMetadata");
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (namespace, resource, name) = match segments.as_slice() {
        ["api", "v1", resource] => (None, *resource, None),
        ["api", "v1", "namespaces", ns, resource] => (Some(*ns), *resource, None),
        ["api", "v1", "namespaces", ns, resource, name] => (Some(*ns), *resource, Some(*name)),
        _ => {
            return status(
                404,
                "NotFound",
                "the server could not find the requested resource".into(),
                json!({}),
            );
        }
    };
    let Some((_, kind)) = KINDS.iter().find(|(r, _)| *r == resource) else {
        return status(
            404,
            "NotFound",
            "the server could not find the requested resource".into(),
            json!({}),
        );
    };
    let watching = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
    // The API server's mapping of a request to its RBAC verb.
    let verb = match (request.method().as_str(), name.is_some(), watching) {
        ("GET", _, true) => "watch",
        ("GET", false, false) => "list",
        ("GET", true, false) => "get",
        (other, _, _) => other,
    }
    .to_lowercase();
    let access = Access::new(&verb, resource, namespace);
    let bearer = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    if bearer.as_deref() != Some(state.token.as_str()) {
        state.seen.lock().unwrap().push(Seen {
            access,
            refused: true,
        });
        return status(401, "Unauthorized", "Unauthorized".into(), json!({}));
    }
    let allowed = state
        .grants
        .lock()
        .unwrap()
        .as_ref()
        .is_none_or(|grants| grants.iter().any(|g| access.allowed_by(g)));
    state.seen.lock().unwrap().push(Seen {
        access: access.clone(),
        refused: !allowed,
    });
    if !allowed {
        let user = "system:serviceaccount:secret-injector-system:secret-injector";
        let what = match name {
            Some(name) => format!("{resource} \"{name}\""),
            None => resource.to_string(),
        };
        let scope = match namespace {
            Some(ns) => format!("in the namespace \"{ns}\""),
            None => "at the cluster scope".to_string(),
        };
        let mut details = json!({"kind": resource});
        if let Some(name) = name {
            details["name"] = json!(name);
        }
        return status(
            403,
            "Forbidden",
            format!(
                "{what} is forbidden: User \"{user}\" cannot {verb} resource \"{resource}\" in API group \"\" {scope}"
            ),
            details,
        );
    }
    if request.method() != axum::http::Method::GET {
        return status(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource".into(),
            json!({}),
        );
    }
    let in_scope = |(ns, _): &(String, String)| namespace.is_none_or(|want| want == ns);
    if let Some(name) = name {
        let objects = state.objects.lock().unwrap();
        let found = objects
            .by_resource
            .get(resource)
            .and_then(|m| m.get(&(namespace.unwrap().to_string(), name.to_string())));
        return match found {
            Some(object) => axum::Json(shaped(object, metadata_only)).into_response(),
            None => status(
                404,
                "NotFound",
                format!("{resource} \"{name}\" not found"),
                json!({"name": name, "kind": resource}),
            ),
        };
    }
    if !watching {
        // One page: `limit` is ignored, as the API server's watch cache ignores it for
        // `resourceVersion=0` (what kube-runtime's watcher sends with any_semantic).
        let objects = state.objects.lock().unwrap();
        let items: Vec<Value> = objects
            .by_resource
            .get(resource)
            .into_iter()
            .flatten()
            .filter(|(key, _)| in_scope(key))
            .map(|(_, o)| shaped(o, metadata_only))
            .collect();
        let (api_version, list_kind) = if metadata_only {
            (
                "meta.k8s.io/v1".to_string(),
                "PartialObjectMetadataList".to_string(),
            )
        } else {
            ("v1".to_string(), format!("{kind}List"))
        };
        return axum::Json(json!({
            "apiVersion": api_version,
            "kind": list_kind,
            "metadata": {"resourceVersion": objects.resource_version.to_string()},
            "items": items,
        }))
        .into_response();
    }
    // A watch: the events after the requested resourceVersion, then live ones, until
    // timeoutSeconds (the API server's default is at least 30 minutes).
    let since: u64 = query
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let timeout = Duration::from_secs(
        query
            .get("timeoutSeconds")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1800),
    );
    let live = state.changes.subscribe();
    let (backlog, last) = {
        let objects = state.objects.lock().unwrap();
        let backlog: Vec<(&'static str, Value)> = if since == 0 {
            objects
                .by_resource
                .get(resource)
                .into_iter()
                .flatten()
                .filter(|(key, _)| in_scope(key))
                .map(|(_, o)| ("ADDED", o.clone()))
                .collect()
        } else {
            objects
                .log
                .iter()
                .filter(|(rv, r, _, o)| {
                    *rv > since
                        && r == resource
                        && namespace.is_none_or(|ns| o["metadata"]["namespace"] == ns)
                })
                .map(|(_, _, kind, o)| (*kind, o.clone()))
                .collect()
        };
        (backlog, objects.resource_version)
    };
    let line = move |kind: &str, object: &Value| {
        let mut line =
            serde_json::to_vec(&json!({"type": kind, "object": shaped(object, metadata_only)}))
                .unwrap();
        line.push(b'\n');
        Ok::<_, std::convert::Infallible>(line)
    };
    let resource = resource.to_string();
    let namespace = namespace.map(str::to_string);
    let deadline = tokio::time::Instant::now() + timeout;
    let replay = futures::stream::iter(backlog.into_iter().map(move |(kind, o)| line(kind, &o)));
    let changes = futures::stream::unfold(live, move |mut live| {
        let (resource, namespace) = (resource.clone(), namespace.clone());
        async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => return None,
                    change = live.recv() => match change {
                        Ok((rv, r, kind, o)) if rv > last && r == resource
                            && namespace.as_deref().is_none_or(|ns| o["metadata"]["namespace"] == ns) =>
                        {
                            return Some((line(kind, &o), live));
                        }
                        Ok(_) => continue,
                        Err(_) => return None,
                    },
                }
            }
        }
    });
    use futures::StreamExt;
    axum::response::Response::builder()
        .header(axum::http::header::CONTENT_TYPE, "application/json")
        .body(axum::body::Body::from_stream(replay.chain(changes)))
        .unwrap()
}
