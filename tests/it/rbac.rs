//! The webhook's RBAC is exactly what its code calls: the ServiceAccount watch runs
//! against a stand-in API server that records each request as the RBAC verb it needs,
//! and those verbs must be the ClusterRole's rules in `manifests/`, no more, no less.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use axum::response::IntoResponse;
use serde_json::Value;

use crate::util::{self, rt};

/// The RBAC verb and resource a request needs (the API server's own mapping: a GET of
/// a collection is `list`, or `watch` with `watch=true`; of a named object, `get`).
fn verb(method: &str, path: &str, query: &str) -> (String, String) {
    let watching = query
        .split('&')
        .any(|p| p == "watch=true" || p == "watch=1");
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    // /api/v1/serviceaccounts, /api/v1/namespaces/<ns>/serviceaccounts[/<name>]
    let (resource, named) = match segments.as_slice() {
        ["api", "v1", "namespaces", _, resource] => (*resource, false),
        ["api", "v1", "namespaces", _, resource, _] => (*resource, true),
        ["api", "v1", resource] => (*resource, false),
        other => (other.last().copied().unwrap_or_default(), false),
    };
    let verb = match (method, named, watching) {
        ("GET", _, true) => "watch",
        ("GET", false, false) => "list",
        ("GET", true, false) => "get",
        (m, _, _) => m,
    };
    (verb.to_lowercase(), resource.to_string())
}

#[test]
fn the_cluster_role_grants_exactly_what_the_service_account_watch_calls() {
    let rt = rt();
    let seen: Arc<Mutex<BTreeSet<(String, String)>>> = Arc::default();
    let record = seen.clone();
    let app = axum::Router::new().fallback(move |req: Request<Body>| {
        let record = record.clone();
        async move {
            let query = req.uri().query().unwrap_or_default().to_string();
            let (verb, resource) = verb(req.method().as_str(), req.uri().path(), &query);
            record.lock().unwrap().insert((verb.clone(), resource));
            if verb == "watch" {
                // An open watch with no events, as a quiet cluster sends.
                tokio::time::sleep(Duration::from_secs(30)).await;
                return axum::Json(serde_json::json!({})).into_response();
            }
            axum::Json(serde_json::json!({
                "apiVersion": "meta.k8s.io/v1",
                "kind": "PartialObjectMetadataList",
                "metadata": {"resourceVersion": "1"},
                "items": [],
            }))
            .into_response()
        }
    });
    let url = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        url
    });
    let accounts = rt.block_on(async {
        let config = kube::Config::new(url.parse().unwrap());
        let client = kube::Client::try_from(config).unwrap();
        let (accounts, task) = secret_injector::webhook::accounts::watch(client);
        tokio::spawn(task);
        accounts
    });
    let start = Instant::now();
    while seen.lock().unwrap().len() < 2 && start.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(accounts.is_synced(), "the cache synced from the stand-in");
    let called = seen.lock().unwrap().clone();

    // The ClusterRole as the manifests render it.
    let rendered = std::process::Command::new(crate::support::venv_bin("kubectl"))
        .args([
            "kustomize",
            util::repo().join("manifests").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(rendered.status.success());
    let docs = secret_injector::webhook::inject::parse_documents(
        &String::from_utf8(rendered.stdout).unwrap(),
    )
    .unwrap();
    let roles: Vec<&Value> = docs
        .iter()
        .filter(|d| d["kind"] == "ClusterRole" || d["kind"] == "Role")
        .collect();
    assert_eq!(roles.len(), 1, "one role");
    let mut granted = BTreeSet::new();
    for rule in roles[0]["rules"].as_array().unwrap() {
        assert_eq!(rule["apiGroups"], serde_json::json!([""]), "{rule}");
        for resource in rule["resources"].as_array().unwrap() {
            for verb in rule["verbs"].as_array().unwrap() {
                granted.insert((
                    verb.as_str().unwrap().to_string(),
                    resource.as_str().unwrap().to_string(),
                ));
            }
        }
    }
    assert_eq!(
        granted, called,
        "the ClusterRole must grant exactly the requests the webhook makes"
    );
    assert_eq!(
        called,
        BTreeSet::from([
            ("list".to_string(), "serviceaccounts".to_string()),
            ("watch".to_string(), "serviceaccounts".to_string()),
        ])
    );
}
