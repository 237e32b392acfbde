//! The webhook's RBAC is exactly what its code calls: the webhook runs as the rendered
//! Deployment runs it, in a cluster the stand-in API server plays, which enforces the
//! rendered roles (403 for anything else) and records each request as the RBAC verb,
//! resource and namespace it needs. The webhook must get ready with no request refused,
//! and must use every grant, each at the scope granted: no more, no less.

use std::collections::BTreeSet;

use crate::in_cluster::{NAMESPACE, aws_pod};
use crate::manifests::{render, run_rendered};
use crate::support::{Access, ApiServer, rbac_grants};
use crate::util::{self, rt};

#[test]
fn the_roles_grant_exactly_what_the_webhook_calls() {
    let docs = render(&util::repo().join("manifests"));
    let granted: BTreeSet<Access> = rbac_grants(&docs, NAMESPACE, "secret-injector")
        .into_iter()
        .collect();
    assert_eq!(
        granted,
        BTreeSet::from([
            Access::new("list", "serviceaccounts", None),
            Access::new("watch", "serviceaccounts", None),
            Access::new("get", "pods", Some(NAMESPACE)),
        ]),
        "list/watch ServiceAccounts cluster-wide; get pods in the webhook's namespace only"
    );
    assert!(
        docs.iter().all(
            |d| !matches!(d["kind"].as_str(), Some("Role" | "ClusterRole"))
                || d["rules"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|r| r.get("resourceNames").is_none())
        ),
        "no resourceNames: the stand-in does not model them"
    );

    let rt = rt();
    let api = rt.block_on(ApiServer::start());
    api.put_service_account(
        "prod",
        "app",
        &[(
            "eks.amazonaws.com/role-arn",
            "arn:aws:iam::123456789012:role/app",
        )],
    );
    let tmp = tempfile::tempdir().unwrap();
    let serve = run_rendered(&docs, &api, tmp.path());
    // Admission reads the cache: no API call on the request path.
    let before = api.seen().len();
    serve.patch(&aws_pod(), "prod");
    assert_eq!(
        api.seen().len(),
        before,
        "admission called the API: {:?}",
        api.seen()
    );

    let seen = api.seen();
    let refused: Vec<_> = seen.iter().filter(|s| s.refused).collect();
    assert!(refused.is_empty(), "refused: {refused:?}");
    let called: BTreeSet<Access> = seen.into_iter().map(|s| s.access).collect();
    assert_eq!(
        called, granted,
        "the roles must grant exactly the requests the webhook makes"
    );
}
