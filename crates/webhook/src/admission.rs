//! AdmissionReview `admission.k8s.io/v1` in, AdmissionReview out.
//!
//! A thin shell around [`crate::mutation::mutate`]: parse the review, hand the pod to the pure
//! layer, turn the outcome into a response. The wire types are our own so that:
//! - only the fields we read are deserialized (the pod stays raw until we know it is a
//!   Pod CREATE);
//! - `patch` is a base64 string, as the Kubernetes API documents (kube-core 5 writes a
//!   number array, kube-rs issue 1781).

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::config::Config;
use crate::mutation::pod::PodView;
use crate::mutation::spec::Context;
use crate::mutation::{Outcome, mutate};

pub const API_VERSION: &str = "admission.k8s.io/v1";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReviewIn<'a> {
    api_version: Option<String>,
    kind: Option<String>,
    #[serde(borrow)]
    request: Option<RequestIn<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestIn<'a> {
    uid: String,
    kind: Option<Gvk>,
    operation: Option<String>,
    namespace: Option<String>,
    #[serde(borrow)]
    object: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Gvk {
    #[serde(default)]
    group: String,
    #[serde(default)]
    kind: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReviewOut<'a> {
    api_version: &'static str,
    kind: &'static str,
    response: ResponseOut<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResponseOut<'a> {
    uid: &'a str,
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<StatusOut>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
}

#[derive(Serialize)]
struct StatusOut {
    code: u16,
    reason: &'static str,
    message: String,
}

/// Why a body is not an AdmissionReview we can answer (HTTP 400).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadReview(pub String);

/// What the webhook did with one review: the `outcome` label of the requests metric.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum ReviewOutcome {
    /// Patched.
    Injected,
    /// A Pod CREATE the webhook leaves alone (opted out, nothing to inject, done).
    Skipped,
    /// Not a Pod CREATE.
    Ignored,
    /// Refused with a message.
    Denied,
    /// Not an AdmissionReview (HTTP 400).
    Invalid,
}

impl ReviewOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewOutcome::Injected => "injected",
            ReviewOutcome::Skipped => "skipped",
            ReviewOutcome::Ignored => "ignored",
            ReviewOutcome::Denied => "denied",
            ReviewOutcome::Invalid => "invalid",
        }
    }
}

impl std::fmt::Display for ReviewOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happened, for logs and metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    pub outcome: ReviewOutcome,
    pub namespace: String,
    pub pod: String,
    /// Skip reason, or the annotations with problems.
    pub detail: String,
    /// Why a pod was left as it is, when it was.
    pub skip: Option<crate::mutation::spec::Skip>,
}

/// Answer one review. Pure apart from what `lookup` does (a cache read).
pub fn review(
    body: &[u8],
    config: &Config,
    lookup: impl FnOnce(&str, &str) -> Context,
) -> Result<(Vec<u8>, Summary), BadReview> {
    let input: ReviewIn<'_> = serde_json::from_slice(body)
        .map_err(|e| BadReview(format!("the body is not an AdmissionReview: {e}")))?;
    if input.api_version.as_deref() != Some(API_VERSION)
        || input.kind.as_deref() != Some("AdmissionReview")
    {
        return Err(BadReview(format!(
            "expected apiVersion {API_VERSION} and kind AdmissionReview, got {} {}",
            contract::text::Escaped(input.api_version.as_deref().unwrap_or("<none>")),
            contract::text::Escaped(input.kind.as_deref().unwrap_or("<none>"))
        )));
    }
    let Some(req) = input.request else {
        return Err(BadReview("the AdmissionReview has no request".to_string()));
    };
    if req.uid.is_empty() {
        return Err(BadReview("the request has an empty uid".to_string()));
    }
    let namespace = req.namespace.clone().unwrap_or_default();
    let mut summary = Summary {
        outcome: ReviewOutcome::Ignored,
        namespace: namespace.clone(),
        pod: String::new(),
        detail: String::new(),
        skip: None,
    };
    let is_pod = req
        .kind
        .as_ref()
        .is_some_and(|k| k.group.is_empty() && k.kind == "Pod");
    if !is_pod || req.operation.as_deref() != Some("CREATE") {
        summary.detail = "not a Pod CREATE".to_string();
        return Ok((allow(&req.uid, None, Vec::new()), summary));
    }
    let pod: PodView = match req.object.map(|raw| serde_json::from_str(raw.get())) {
        Some(Ok(pod)) => pod,
        Some(Err(e)) => {
            summary.outcome = ReviewOutcome::Denied;
            summary.detail = "unreadable pod".to_string();
            let message = format!("cannot read the pod in the request: {e}");
            return Ok((deny(&req.uid, message), summary));
        }
        None => {
            summary.outcome = ReviewOutcome::Denied;
            summary.detail = "no object".to_string();
            let message = "the request carries no pod object".to_string();
            return Ok((deny(&req.uid, message), summary));
        }
    };
    summary.pod = pod.display_name();
    let ctx = lookup(&namespace, pod.service_account());
    match mutate(&pod, config, &ctx) {
        Outcome::Skipped(reason) => {
            summary.outcome = ReviewOutcome::Skipped;
            summary.detail = reason.reason().to_string();
            summary.skip = Some(reason);
            Ok((allow(&req.uid, None, Vec::new()), summary))
        }
        Outcome::Injected { patch, warnings } => {
            summary.outcome = ReviewOutcome::Injected;
            let bytes = patch.to_vec();
            Ok((allow(&req.uid, Some(&bytes), warnings), summary))
        }
        Outcome::Denied(problems) => {
            summary.outcome = ReviewOutcome::Denied;
            summary.detail = problems
                .0
                .iter()
                .map(|p| p.annotation.as_str())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect::<Vec<_>>()
                .join(",");
            Ok((deny(&req.uid, problems.to_string()), summary))
        }
    }
}

fn allow(uid: &str, patch: Option<&[u8]>, warnings: Vec<String>) -> Vec<u8> {
    encode(ResponseOut {
        uid,
        allowed: true,
        patch_type: patch.map(|_| "JSONPatch"),
        patch: patch.map(|p| base64::engine::general_purpose::STANDARD.encode(p)),
        status: None,
        warnings,
    })
}

fn deny(uid: &str, message: String) -> Vec<u8> {
    encode(ResponseOut {
        uid,
        allowed: false,
        patch_type: None,
        patch: None,
        status: Some(StatusOut {
            code: 400,
            reason: "Invalid",
            message,
        }),
        warnings: Vec::new(),
    })
}

fn encode(response: ResponseOut<'_>) -> Vec<u8> {
    // One buffer of about the final size: the base64 patch is most of it.
    let size = 256
        + response.uid.len()
        + response.patch.as_ref().map_or(0, String::len)
        + response.status.as_ref().map_or(0, |s| s.message.len() * 2)
        + response.warnings.iter().map(|w| w.len() + 8).sum::<usize>();
    let mut bytes = Vec::with_capacity(size);
    serde_json::to_writer(
        &mut bytes,
        &ReviewOut {
            api_version: API_VERSION,
            kind: "AdmissionReview",
            response,
        },
    )
    .expect("a response serializes");
    bytes
}

/// Build a request body for tests, benches and the `inject` round trip.
pub fn request_for(pod: &serde_json::Value, namespace: &str, operation: &str) -> Vec<u8> {
    let body = serde_json::json!({
        "apiVersion": API_VERSION,
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": namespace,
            "operation": operation,
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": pod,
            "oldObject": null,
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        }
    });
    serde_json::to_vec(&body).expect("serializes")
}

/// The decoded patch of a response, for tests.
pub fn decode_patch(response: &[u8]) -> Option<json_patch::Patch> {
    let v: serde_json::Value = serde_json::from_slice(response).ok()?;
    let b64 = v["response"]["patch"].as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn pod() -> Value {
        json!({
            "metadata": {"generateName": "app-7d9c-", "annotations": {"secret-injector.io/secret-db": "vault:secret/data/db#password"}},
            "spec": {"containers": [{"name": "app", "image": "app:1"}]},
        })
    }

    fn answer(body: &[u8]) -> (Value, Summary) {
        let (bytes, summary) = review(body, &Config::default(), |_, _| Context::default()).unwrap();
        (serde_json::from_slice(&bytes).unwrap(), summary)
    }

    #[test]
    fn patch_is_a_base64_string_with_the_request_uid() {
        let (resp, summary) = answer(&request_for(&pod(), "prod", "CREATE"));
        assert_eq!(resp["apiVersion"], API_VERSION);
        assert_eq!(resp["kind"], "AdmissionReview");
        assert_eq!(
            resp["response"]["uid"],
            "705ab4f5-6393-11e8-b7cc-42010a800002"
        );
        assert_eq!(resp["response"]["allowed"], true);
        assert_eq!(resp["response"]["patchType"], "JSONPatch");
        assert!(resp["response"]["patch"].is_string(), "{resp}");
        assert_eq!(summary.outcome, ReviewOutcome::Injected);
        assert_eq!(summary.pod, "app-7d9c-*");
        let patch = decode_patch(&serde_json::to_vec(&resp).unwrap()).unwrap();
        assert!(!patch.0.is_empty());
    }

    /// A review as kube-apiserver sends it for a pod a ReplicaSet creates: generateName,
    /// no namespace in the object, managedFields, the kube-api-access volume.
    #[test]
    fn captured_replicaset_review() {
        let body = include_bytes!("../../../tests/fixtures/reviews/replicaset-pod-create.json");
        let mut ctx_seen = None;
        let (bytes, summary) = review(body, &Config::default(), |ns, sa| {
            ctx_seen = Some((ns.to_string(), sa.to_string()));
            Context {
                service_account_role_arn: Some("arn:aws:iam::123456789012:role/deparrow".into()),
                ..Context::default()
            }
        })
        .unwrap();
        assert_eq!(ctx_seen, Some(("deparrow".into(), "deparrow-api".into())));
        assert_eq!(summary.outcome, ReviewOutcome::Injected);
        assert_eq!(summary.namespace, "deparrow");
        let resp: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            resp["response"]["uid"],
            "3f0b6c1e-2f7a-4d2b-9a51-6b1f0f4c2e77"
        );
        let mut pod: Value =
            serde_json::from_slice::<Value>(body).unwrap()["request"]["object"].clone();
        json_patch::patch(&mut pod, &decode_patch(&bytes).unwrap()).unwrap();
        let init = &pod["spec"]["initContainers"][0];
        assert_eq!(init["securityContext"]["runAsUser"], 10001);
        assert!(
            init.to_string()
                .contains("arn:aws:iam::123456789012:role/deparrow")
        );
        assert_eq!(pod["spec"]["volumes"][0]["name"], "kube-api-access-9xk2p");
        assert_eq!(
            pod["spec"]["containers"][0]["volumeMounts"][1]["mountPath"],
            "/secrets"
        );
        let typed: k8s_openapi::api::core::v1::Pod = serde_json::from_value(pod).unwrap();
        assert_eq!(typed.spec.unwrap().init_containers.unwrap().len(), 1);
    }

    #[test]
    fn non_pod_and_non_create_are_allowed_unchanged() {
        let mut body: Value =
            serde_json::from_slice(&request_for(&pod(), "prod", "UPDATE")).unwrap();
        let (resp, _) = answer(&serde_json::to_vec(&body).unwrap());
        assert_eq!(resp["response"]["allowed"], true);
        assert!(resp["response"].get("patch").is_none());
        body["request"]["operation"] = json!("CREATE");
        body["request"]["kind"] = json!({"group": "apps", "version": "v1", "kind": "Deployment"});
        let (resp, s) = answer(&serde_json::to_vec(&body).unwrap());
        assert!(resp["response"].get("patch").is_none());
        assert_eq!(s.outcome, ReviewOutcome::Ignored);
    }

    #[test]
    fn bad_annotations_are_denied_with_the_message() {
        let mut p = pod();
        p["metadata"]["annotations"]["secret-injector.io/secret-db"] = json!("vualt:x");
        let (resp, s) = answer(&request_for(&p, "prod", "CREATE"));
        assert_eq!(resp["response"]["allowed"], false);
        let msg = resp["response"]["status"]["message"].as_str().unwrap();
        assert!(msg.contains("secret-injector.io/secret-db"), "{msg}");
        assert_eq!(s.outcome, ReviewOutcome::Denied);
        assert_eq!(s.detail, "secret-injector.io/secret-db");
    }

    #[test]
    fn junk_is_a_bad_review_not_a_panic() {
        for junk in [
            &b""[..],
            b"{",
            b"null",
            b"[]",
            b"{\"apiVersion\":\"admission.k8s.io/v1beta1\",\"kind\":\"AdmissionReview\"}",
            b"{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\"}",
            b"{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"request\":{\"uid\":\"\"}}",
            b"\xff\xfe",
        ] {
            assert!(review(junk, &Config::default(), |_, _| Context::default()).is_err());
        }
        // A pod object of the wrong shape is denied, not a 500.
        let mut body: Value =
            serde_json::from_slice(&request_for(&pod(), "prod", "CREATE")).unwrap();
        body["request"]["object"]["spec"]["containers"] = json!("nope");
        let (resp, _) = answer(&serde_json::to_vec(&body).unwrap());
        assert_eq!(resp["response"]["allowed"], false);
    }
}
