//! ServiceAccounts seen through a kube-runtime reflector (metadata only), so the
//! admission path reads `eks.amazonaws.com/role-arn` from memory, never from the API.
//!
//! Until the cache has synced, lookups fall back to the pod's own
//! `secret-injector.io/aws-role-arn` annotation and say so in a log field.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};

use crate::inject::ROLE_ARN_ANNOTATION;
use crate::spec::Context;

type Meta = PartialObjectMeta<ServiceAccount>;

/// A read-only view of the cache.
#[derive(Clone)]
pub struct Accounts {
    store: Store<Meta>,
    synced: Arc<AtomicBool>,
}

impl Accounts {
    /// Build from a store and a flag the caller sets once the store is ready.
    pub fn new(store: Store<Meta>, synced: Arc<AtomicBool>) -> Self {
        Accounts { store, synced }
    }

    /// The flag that turns true once the cache has synced.
    pub fn synced_flag(&self) -> Arc<AtomicBool> {
        self.synced.clone()
    }

    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Relaxed)
    }

    /// The facts admission needs about `namespace/name`.
    pub fn context(&self, namespace: &str, name: &str) -> Context {
        if !self.is_synced() {
            tracing::warn!(
                %namespace,
                service_account = %name,
                sa_cache_synced = false,
                "service-account cache not synced yet; using only the pod's secret-injector.io/aws-role-arn"
            );
            return Context::default();
        }
        let key = ObjectRef::<Meta>::new_with(name, ()).within(namespace);
        let role = self.store.get(&key).and_then(|sa| {
            sa.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(ROLE_ARN_ANNOTATION))
                .cloned()
        });
        Context {
            service_account_role_arn: role,
        }
    }
}

/// Start watching ServiceAccounts in all namespaces. The returned future runs the watch
/// and must be spawned; the view is usable at once and reports when it has synced.
pub fn watch(
    client: kube::Client,
) -> (
    Accounts,
    impl std::future::Future<Output = ()> + Send + 'static,
) {
    let (store, writer) = reflector::store::<Meta>();
    let synced = Arc::new(AtomicBool::new(false));
    let accounts = Accounts::new(store.clone(), synced.clone());
    // Api<PartialObjectMeta<_>> makes metadata-only list/watch requests.
    let api = kube::Api::<Meta>::all(client);
    let task = async move {
        let ready = {
            let store = store.clone();
            async move {
                if store.wait_until_ready().await.is_ok() {
                    synced.store(true, Ordering::Relaxed);
                    tracing::info!("service-account cache synced");
                }
            }
        };
        let stream = watcher(api, watcher::Config::default().any_semantic())
            .default_backoff()
            .reflect(writer)
            .applied_objects()
            .for_each(|r| async move {
                if let Err(e) = r {
                    tracing::warn!(error = %e, "service-account watch error; retrying");
                }
            });
        tokio::join!(ready, stream);
    };
    (accounts, task)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::ObjectMeta;

    fn sa(ns: &str, name: &str, arn: Option<&str>) -> Meta {
        let mut m = Meta {
            types: None,
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(ns.into()),
                ..Default::default()
            },
            _phantom: Default::default(),
        };
        if let Some(arn) = arn {
            m.metadata.annotations =
                Some([(ROLE_ARN_ANNOTATION.to_string(), arn.to_string())].into());
        }
        m
    }

    #[test]
    fn reads_the_role_from_the_cache_once_synced() {
        let (store, mut writer) = reflector::store::<Meta>();
        let synced = Arc::new(AtomicBool::new(false));
        let accounts = Accounts::new(store, synced.clone());
        writer.apply_watcher_event(&watcher::Event::Init);
        writer.apply_watcher_event(&watcher::Event::InitApply(sa(
            "prod",
            "app",
            Some("arn:aws:iam::123456789012:role/app"),
        )));
        writer.apply_watcher_event(&watcher::Event::InitApply(sa("prod", "plain", None)));
        writer.apply_watcher_event(&watcher::Event::InitDone);
        // not synced: the annotation fallback
        assert_eq!(accounts.context("prod", "app"), Context::default());
        synced.store(true, Ordering::Relaxed);
        assert_eq!(
            accounts
                .context("prod", "app")
                .service_account_role_arn
                .as_deref(),
            Some("arn:aws:iam::123456789012:role/app")
        );
        assert_eq!(accounts.context("prod", "plain"), Context::default());
        assert_eq!(accounts.context("other", "app"), Context::default());
    }
}
