//! Real servers for tests and benches: OpenBao (`bao server -dev`) and moto, both from
//! the test venv that scripts/test.sh installs, on free loopback ports; a service-account
//! token signer; and two small proxies (one that delays or starts late, one that
//! throttles like AWS).
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

/// A binary of the test venv (`bao`, `moto_server`).
pub fn venv_bin(name: &str) -> PathBuf {
    let venv = std::env::var_os("SECRET_INJECTOR_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv"));
    let bin = venv.join("bin").join(name);
    assert!(
        bin.exists(),
        "{} is missing: run scripts/test.sh, which installs the test servers into .venv",
        bin.display()
    );
    bin
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A port p with p+1 also free (OpenBao dev mode takes p+1 for its cluster listener).
pub fn free_port_pair() -> u16 {
    loop {
        let p = free_port();
        if p < 65000 && TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
}

/// Wait until `url` answers; `false` if the process exited first (a port race).
pub async fn wait_http(url: &str, what: &str, child: &mut Child) -> bool {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let client = reqwest::Client::builder()
        .tls_backend_rustls()
        .tls_danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client.get(url).send().await
            && r.status().as_u16() < 500
        {
            return true;
        }
        if let Ok(Some(status)) = child.try_wait() {
            eprintln!("{what} exited early ({status}); retrying on another port");
            return false;
        }
        assert!(Instant::now() < deadline, "{what} did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The tests' own client for setting servers up (it does not check dev-TLS
/// certificates; the code under test always does).
pub fn http() -> reqwest::Client {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    reqwest::Client::builder()
        .tls_backend_rustls()
        .tls_danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// `bao server -dev` on a free port; killed on drop.
pub struct OpenBao {
    child: Child,
    pub port: u16,
    pub addr: String,
    pub root: String,
}

impl OpenBao {
    pub async fn start() -> OpenBao {
        Self::start_with(None).await
    }

    /// Dev mode with TLS: OpenBao generates a CA and writes `vault-ca.pem` into `dir`.
    pub async fn start_tls(dir: &std::path::Path) -> OpenBao {
        Self::start_with(Some(dir)).await
    }

    async fn start_with(tls_dir: Option<&std::path::Path>) -> OpenBao {
        for _ in 0..5 {
            if let Some(bao) = Self::try_start_on(free_port_pair(), tls_dir).await {
                return bao;
            }
        }
        panic!("OpenBao did not start");
    }

    /// Start on `port`; `None` if the port was taken meanwhile.
    async fn try_start_on(port: u16, tls_dir: Option<&std::path::Path>) -> Option<OpenBao> {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let root = "root-token-for-tests".to_string();
        let mut cmd = Command::new(venv_bin("bao"));
        cmd.args([
            "server",
            "-dev",
            &format!("-dev-root-token-id={root}"),
            &format!("-dev-listen-address=127.0.0.1:{port}"),
        ]);
        if let Some(dir) = tls_dir {
            cmd.arg("-dev-tls")
                .arg(format!("-dev-tls-cert-dir={}", dir.display()));
        }
        let mut child = cmd
            .env("HOME", std::env::temp_dir())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start bao");
        let scheme = if tls_dir.is_some() { "https" } else { "http" };
        let addr = format!("{scheme}://127.0.0.1:{port}");
        if !wait_http(&format!("{addr}/v1/sys/health"), "OpenBao", &mut child).await {
            return None;
        }
        Some(OpenBao {
            child,
            port,
            addr,
            root,
        })
    }

    /// A root-token API call; panics on an error status.
    pub async fn api(&self, method: &str, path: &str, body: Value) -> Value {
        let req = http()
            .request(method.parse().unwrap(), format!("{}/v1/{path}", self.addr))
            .header("X-Vault-Token", &self.root);
        let req = if body.is_null() { req } else { req.json(&body) };
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        assert!(status.is_success(), "{method} {path}: {status} {text}");
        if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        }
    }

    /// Enable `jwt` auth at `mount` trusting `public_pem`, with a role per
    /// (role, namespace, service account, policy).
    pub async fn setup_jwt(
        &self,
        mount: &str,
        public_pem: &str,
        roles: &[(&str, &str, &str, &str)],
    ) {
        self.api("POST", &format!("sys/auth/{mount}"), json!({"type": "jwt"}))
            .await;
        self.api(
            "POST",
            &format!("auth/{mount}/config"),
            json!({"jwt_validation_pubkeys": [public_pem]}),
        )
        .await;
        for (role, ns, sa, policy) in roles {
            self.api(
                "POST",
                &format!("auth/{mount}/role/{role}"),
                json!({
                    "role_type": "jwt",
                    "bound_audiences": ["vault"],
                    "bound_subject": format!("system:serviceaccount:{ns}:{sa}"),
                    "user_claim": "sub",
                    "policies": [policy],
                    "token_ttl": "10m",
                }),
            )
            .await;
        }
    }

    pub async fn policy(&self, name: &str, hcl: &str) {
        self.api(
            "PUT",
            &format!("sys/policies/acl/{name}"),
            json!({"policy": hcl}),
        )
        .await;
    }

    pub async fn kv2_put(&self, path: &str, data: Value) {
        self.api(
            "POST",
            &format!("secret/data/{path}"),
            json!({"data": data}),
        )
        .await;
    }

    /// Number of tokens that exist (accessors), to see revocation.
    pub async fn token_count(&self) -> usize {
        let v = self.api("LIST", "auth/token/accessors", Value::Null).await;
        v["data"]["keys"].as_array().map_or(0, Vec::len)
    }
}

impl Drop for OpenBao {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `moto_server` on a free port; killed on drop.
pub struct Moto {
    child: Child,
    pub port: u16,
    pub url: String,
}

impl Moto {
    pub async fn start() -> Moto {
        Moto::start_with_env(&[]).await
    }

    async fn start_with_env(env: &[(&str, String)]) -> Moto {
        for _ in 0..5 {
            let port = free_port();
            let mut child = Command::new(venv_bin("moto_server"))
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .envs(env.iter().map(|(k, v)| (k, v)))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start moto_server");
            let url = format!("http://127.0.0.1:{port}");
            if wait_http(&format!("{url}/moto-api/"), "moto", &mut child).await {
                return Moto { child, port, url };
            }
        }
        panic!("moto did not start");
    }

    /// moto that enforces IAM once it is set up: a role `role` whose only permission is
    /// `allowed_action` (on every resource), and `secrets` created. Returns the role ARN.
    ///
    /// moto authorizes every action after the first `INITIAL_NO_AUTH_ACTION_COUNT`, and
    /// cannot handle an unsigned call once it does, so the count is the setup actions
    /// plus one: the `AssumeRoleWithWebIdentity` of the single init run that follows.
    /// Everything that run does afterwards is signed with the role's session keys and
    /// checked against the role's policy.
    pub async fn start_enforcing(
        role: &str,
        allowed_action: &str,
        secrets: &[(&str, &str)],
    ) -> (Moto, String) {
        let free = 2 + secrets.len() + 1;
        let moto =
            Moto::start_with_env(&[("INITIAL_NO_AUTH_ACTION_COUNT", free.to_string())]).await;
        let secrets: serde_json::Map<String, Value> = secrets
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
            .collect();
        let out = Command::new(venv_bin("python"))
            .args([
                "-c",
                MOTO_IAM_SETUP,
                &moto.url,
                role,
                allowed_action,
                &Value::Object(secrets).to_string(),
            ])
            .output()
            .expect("run the venv's python");
        assert!(
            out.status.success(),
            "moto IAM setup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let arn = String::from_utf8(out.stdout).unwrap().trim().to_string();
        (moto, arn)
    }

    /// A Secrets Manager client with static test keys.
    pub async fn client(&self) -> aws_sdk_secretsmanager::Client {
        let creds =
            aws_sdk_secretsmanager::config::Credentials::new("test", "test", None, None, "tests");
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(&self.url)
            .credentials_provider(creds)
            .load()
            .await;
        aws_sdk_secretsmanager::Client::new(&config)
    }

    /// Put a new version of a secret; returns its version id.
    pub async fn put(&self, name: &str, value: &str) -> String {
        let out = self
            .client()
            .await
            .put_secret_value()
            .secret_id(name)
            .secret_string(value)
            .send()
            .await
            .unwrap();
        out.version_id.unwrap()
    }

    /// Create a secret; returns its ARN.
    pub async fn create(&self, name: &str, value: &str) -> String {
        let out = self
            .client()
            .await
            .create_secret()
            .name(name)
            .secret_string(value)
            .send()
            .await
            .unwrap();
        out.arn.unwrap()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Exactly `2 + len(secrets)` moto actions: CreateRole, PutRolePolicy, CreateSecret each.
/// boto3 comes with moto[server] in the test venv.
const MOTO_IAM_SETUP: &str = r#"
import json, sys
import boto3
url, role, action, secrets = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
kw = dict(endpoint_url=url, region_name="us-east-1",
          aws_access_key_id="test", aws_secret_access_key="test")
iam = boto3.client("iam", **kw)
trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
         "Principal": {"Federated": "arn:aws:iam::123456789012:oidc-provider/oidc.eks.example"},
         "Action": "sts:AssumeRoleWithWebIdentity"}]}
arn = iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
policy = {"Version": "2012-10-17",
          "Statement": [{"Effect": "Allow", "Action": action, "Resource": "*"}]}
iam.put_role_policy(RoleName=role, PolicyName="allowed", PolicyDocument=json.dumps(policy))
sm = boto3.client("secretsmanager", **kw)
for name, value in secrets.items():
    sm.create_secret(Name=name, SecretString=value)
print(arn)
"#;

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
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let claims = json!({
            "iss": "https://kubernetes.default.svc.cluster.local",
            "sub": format!("system:serviceaccount:{ns}:{sa}"),
            "aud": [aud],
            "iat": now,
            "nbf": now,
            "exp": now + 600,
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

/// A TCP forwarder to `target` that starts listening after `start_after` and delays
/// every client-to-server chunk by `delay` (so each HTTP request pays one delay).
pub struct TcpProxy {
    pub port: u16,
    pub connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    pub fn start(target: u16, start_after: Duration, delay: Duration) -> TcpProxy {
        let port = free_port();
        let connections = Arc::new(AtomicUsize::new(0));
        let count = connections.clone();
        let task = tokio::spawn(async move {
            tokio::time::sleep(start_after).await;
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
                .await
                .unwrap();
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    else {
                        return;
                    };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let up = async {
                        use tokio::io::{AsyncReadExt, AsyncWriteExt};
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            let n = match cr.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            let mut n = n;
                            if !delay.is_zero() {
                                tokio::time::sleep(delay).await;
                                // what arrived meanwhile (a request body after its
                                // headers) belongs to the same request: no second delay
                                while n < buf.len() {
                                    match cr.try_read(&mut buf[n..]) {
                                        Ok(0) | Err(_) => break,
                                        Ok(m) => n += m,
                                    }
                                }
                            }
                            if sw.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                        let _ = sw.shutdown().await;
                    };
                    let down = async {
                        let _ = tokio::io::copy(&mut sr, &mut cw).await;
                    };
                    tokio::join!(up, down);
                });
            }
        });
        TcpProxy {
            port,
            connections,
            task,
        }
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An HTTP proxy in front of moto that answers the first `throttle` requests with
/// `ThrottlingException`, as Secrets Manager does when a quota is hit.
pub struct ThrottleProxy {
    pub port: u16,
    pub requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

/// What [`ThrottleProxy`] answers in place of its first requests.
#[derive(Clone, Copy)]
pub enum Fault {
    /// AWS's `ThrottlingException` (HTTP 400 with the JSON error).
    Throttling,
    /// A load balancer's HTTP 503 page, which carries no AWS error code.
    Unavailable,
}

impl ThrottleProxy {
    pub async fn start(target: String, throttle: usize) -> ThrottleProxy {
        ThrottleProxy::start_with(target, throttle, Fault::Throttling).await
    }

    /// Answers the first `failures` requests with `fault`, forwards the rest.
    pub async fn start_with(target: String, failures: usize, fault: Fault) -> ThrottleProxy {
        use axum::body::Bytes;
        use axum::http::{HeaderMap, Method, StatusCode, Uri};
        use axum::response::IntoResponse;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(AtomicUsize::new(0));
        let count = requests.clone();
        let client = http();
        let handler = move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let count = count.clone();
            let client = client.clone();
            let target = target.clone();
            async move {
                let n = count.fetch_add(1, Ordering::SeqCst);
                if n < failures {
                    return match fault {
                        Fault::Throttling => (
                            StatusCode::BAD_REQUEST,
                            [
                                ("x-amzn-errortype", "ThrottlingException"),
                                ("content-type", "application/x-amz-json-1.1"),
                            ],
                            r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#
                                .to_string(),
                        )
                            .into_response(),
                        Fault::Unavailable => (
                            StatusCode::SERVICE_UNAVAILABLE,
                            [("content-type", "text/html")],
                            "<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>"
                                .to_string(),
                        )
                            .into_response(),
                    };
                }
                let mut req = client.request(method, format!("{target}{uri}")).body(body);
                for (k, v) in &headers {
                    if k != "host" && k != "content-length" {
                        req = req.header(k, v);
                    }
                }
                let resp = req.send().await.unwrap();
                let status = StatusCode::from_u16(resp.status().as_u16()).unwrap();
                let mut out_headers = HeaderMap::new();
                for (k, v) in resp.headers() {
                    if k != "content-length" && k != "transfer-encoding" {
                        out_headers.insert(k.clone(), v.clone());
                    }
                }
                let body = resp.bytes().await.unwrap();
                (status, out_headers, body).into_response()
            }
        };
        let app = axum::Router::new().fallback(handler);
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        ThrottleProxy {
            port,
            requests,
            task,
        }
    }
}

impl Drop for ThrottleProxy {
    fn drop(&mut self) {
        self.task.abort();
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

impl OpenBao {
    /// Enable `kubernetes` auth at `mount` against a TokenReview endpoint, with a role
    /// per (role, namespace, service account, policy).
    pub async fn setup_kubernetes(
        &self,
        mount: &str,
        reviewer_port: u16,
        roles: &[(&str, &str, &str, &str)],
    ) {
        self.api(
            "POST",
            &format!("sys/auth/{mount}"),
            json!({"type": "kubernetes"}),
        )
        .await;
        let any_ca = rcgen::generate_simple_self_signed(vec!["kubernetes".to_string()])
            .unwrap()
            .cert
            .pem();
        self.api(
            "POST",
            &format!("auth/{mount}/config"),
            json!({
                "kubernetes_host": format!("http://127.0.0.1:{reviewer_port}"),
                "kubernetes_ca_cert": any_ca,
                "disable_local_ca_jwt": true,
            }),
        )
        .await;
        for (role, ns, sa, policy) in roles {
            self.api(
                "POST",
                &format!("auth/{mount}/role/{role}"),
                json!({
                    "bound_service_account_names": [sa],
                    "bound_service_account_namespaces": [ns],
                    "audience": "vault",
                    "policies": [policy],
                    "token_ttl": "10m",
                }),
            )
            .await;
        }
    }
}

/// A throwaway PostgreSQL cluster from Debian's packages (what Vault's database engine
/// issues credentials for), on a free loopback port. Password (scram) auth over TCP, so
/// a login proves the password; run as the `postgres` user when the tests run as root,
/// because the server refuses to run as root.
pub struct Postgres {
    child: Child,
    _dir: tempfile::TempDir,
    pub port: u16,
    pub superuser_password: String,
}

impl Postgres {
    /// A server binary of the newest PostgreSQL under /usr/lib/postgresql (Debian's
    /// layout), else from `PATH`.
    fn bin(name: &str) -> PathBuf {
        let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let version = e.file_name().to_str()?.split('.').next()?.parse().ok()?;
                Some((version, e.path().join("bin").join(name)))
            })
            .filter(|(_, p)| p.exists())
            .collect();
        found.sort();
        if let Some((_, path)) = found.pop() {
            return path;
        }
        std::env::var_os("PATH")
            .into_iter()
            .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .map(|dir| dir.join(name))
            .find(|p| p.exists())
            .unwrap_or_else(|| {
                panic!("{name} is missing: run scripts/test.sh, which installs Debian's postgresql")
            })
    }

    /// `cmd` as the `postgres` user when we are root.
    fn command(program: PathBuf) -> Command {
        // The effective uid, from the `Uid:` line of /proc/self/status.
        let root = std::fs::read_to_string("/proc/self/status")
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .is_some_and(|l| l.split_whitespace().nth(2) == Some("0"));
        if root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        }
    }

    pub async fn start() -> Postgres {
        // Under /tmp whatever TMPDIR says: the postgres user must reach it.
        let dir = tempfile::Builder::new()
            .prefix("secret-injector-pg")
            .tempdir_in("/tmp")
            .unwrap();
        let data = dir.path().join("data");
        let pwfile = dir.path().join("pw");
        let superuser_password = "pg-super-Xk29".to_string();
        std::fs::write(&pwfile, &superuser_password).unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            // the postgres user must reach the directory when we run as root
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
            std::fs::set_permissions(&pwfile, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        let out = Self::command(Self::bin("initdb"))
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--no-sync",
                // independent of the machine's LANG and installed locales
                "--no-locale",
                "--encoding=UTF8",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for _ in 0..5 {
            let port = free_port();
            let mut child = Self::command(Self::bin("postgres"))
                .arg("-D")
                .arg(&data)
                .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
                .arg("-k")
                .arg(dir.path())
                .args(["-c", "fsync=off"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start postgres");
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                let ready = Command::new(Self::bin("pg_isready"))
                    .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q"])
                    .status()
                    .is_ok_and(|s| s.success());
                if ready {
                    return Postgres {
                        child,
                        _dir: dir,
                        port,
                        superuser_password,
                    };
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Self::stop(&data);
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("postgres did not start");
    }

    /// Stop the server fast. Killing the `runuser` wrapper would orphan it.
    fn stop(data: &std::path::Path) {
        let _ = Self::command(Self::bin("pg_ctl"))
            .arg("-D")
            .arg(data)
            .args(["stop", "-m", "immediate", "-w"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// Run `sql` with psql as `user`/`password` over TCP; stdout, or the error.
    pub fn psql(&self, user: &str, password: &str, sql: &str) -> Result<String, String> {
        let out = Command::new(Self::bin("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                user,
                "-d",
                "postgres",
                "-tAX",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ])
            .env("PGPASSWORD", password)
            .env("PGCONNECT_TIMEOUT", "5")
            .stdin(Stdio::null())
            .output()
            .expect("run psql");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        Self::stop(&self._dir.path().join("data"));
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client TLS config that trusts only the PEM CA at `ca`.
pub fn rustls_client_config(ca: &std::path::Path) -> rustls::ClientConfig {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
}
