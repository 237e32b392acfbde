//! The Kubernetes side, which no API server plays here: service-account tokens signed
//! with a key the test owns, and the TokenReview API that checks them.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

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
