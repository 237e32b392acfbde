//! ServiceAccounts seen through a kube-runtime reflector (metadata only), so the
//! admission path reads `eks.amazonaws.com/role-arn` from memory, never from the API.
//!
//! Each object is trimmed before it is stored ([`trim`]): only the name, the namespace
//! and the annotations admission reads are kept, not managedFields, labels or the rest.
//! The same events keep a count of ServiceAccounts per namespace
//! ([`Accounts::namespace_known`]).
//!
//! Until the cache has synced, lookups fall back to the pod's own
//! `secret-injector.io/aws-role-arn` annotation and say so in a log field.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use futures::{Stream, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::core::{ObjectMeta, PartialObjectMeta};
use kube::runtime::reflector::{self, Lookup, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};

use crate::mutation::spec::{Context, SERVICE_ACCOUNT_ANNOTATIONS};

type Meta = PartialObjectMeta<ServiceAccount>;

/// The only annotations the cache keeps.
pub const KEPT_ANNOTATIONS: [&str; 3] = SERVICE_ACCOUNT_ANNOTATIONS;

/// Reduce a ServiceAccount to what admission reads: name, namespace and
/// [`KEPT_ANNOTATIONS`]. Everything else (managedFields, labels, other annotations,
/// owner references, finalizers, uid, resourceVersion, timestamps, type meta) is dropped,
/// so the cache costs a few strings per ServiceAccount. The watcher has already taken
/// the resourceVersion it needs from the event when this runs, and the store keys on
/// namespace and name only.
pub fn trim(sa: &mut Meta) {
    let meta = std::mem::take(&mut sa.metadata);
    let annotations = meta
        .annotations
        .map(|mut a| {
            a.retain(|k, _| KEPT_ANNOTATIONS.contains(&k.as_str()));
            a
        })
        .filter(|a| !a.is_empty());
    sa.types = None;
    sa.metadata = ObjectMeta {
        name: meta.name,
        namespace: meta.namespace,
        annotations,
        ..ObjectMeta::default()
    };
}

/// The number of cached ServiceAccounts in each namespace, kept in step with the store.
#[derive(Clone, Default)]
struct Namespaces(Arc<RwLock<HashMap<String, usize>>>);

impl Namespaces {
    fn contains(&self, namespace: &str) -> bool {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(namespace)
    }

    /// Apply one (trimmed) event to the store through `writer`, and to the counts.
    ///
    /// Apply and Delete change a count only when the store did not / did hold the object
    /// before, so a modification is not counted twice and a Delete the store never saw
    /// does not go negative. A relist (Init, InitApply..., InitDone) swaps the store
    /// wholesale at InitDone, so the counts are rebuilt from the store then: one pass per
    /// relist, none per request.
    fn apply(
        &self,
        store: &Store<Meta>,
        writer: &mut reflector::store::Writer<Meta>,
        event: &watcher::Event<Meta>,
    ) {
        let known_before = match event {
            watcher::Event::Apply(sa) | watcher::Event::Delete(sa) => {
                Some(store.get(&sa.to_object_ref(())).is_some())
            }
            _ => None,
        };
        writer.apply_watcher_event(event);
        if let watcher::Event::InitDone = event {
            // Count outside the lock, so lookups do not wait for the pass.
            let mut fresh = HashMap::new();
            for sa in store.state() {
                if let Some(ns) = &sa.metadata.namespace {
                    *fresh.entry(ns.clone()).or_default() += 1;
                }
            }
            *self.0.write().unwrap_or_else(PoisonError::into_inner) = fresh;
            return;
        }
        let mut counts = self.0.write().unwrap_or_else(PoisonError::into_inner);
        match (event, known_before) {
            (watcher::Event::Apply(sa), Some(false)) => {
                if let Some(ns) = &sa.metadata.namespace {
                    *counts.entry(ns.clone()).or_default() += 1;
                }
            }
            (watcher::Event::Delete(sa), Some(true)) => {
                if let Some(ns) = &sa.metadata.namespace
                    && let Some(n) = counts.get_mut(ns)
                {
                    *n -= 1;
                    if *n == 0 {
                        counts.remove(ns);
                    }
                }
            }
            _ => {}
        }
    }
}

/// The watch stream as the cache consumes it: each object trimmed, then every event
/// applied to the store (what `.reflect(writer)` would do) and to the namespace counts
/// in the same step. Yields the applied objects, or the watch errors.
fn cache_events<S>(
    events: S,
    mut writer: reflector::store::Writer<Meta>,
    namespaces: Namespaces,
) -> impl Stream<Item = Result<Meta, watcher::Error>>
where
    S: Stream<Item = Result<watcher::Event<Meta>, watcher::Error>>,
{
    let store = writer.as_reader();
    events
        .modify(trim)
        .map_ok(move |event| {
            namespaces.apply(&store, &mut writer, &event);
            event
        })
        .applied_objects()
}

/// The last error of the watch, for `/readyz` while the cache has not synced.
pub type LastError = Arc<Mutex<Option<String>>>;

/// A read-only view of the cache.
#[derive(Clone)]
pub struct Accounts {
    store: Store<Meta>,
    synced: Arc<AtomicBool>,
    namespaces: Namespaces,
    last_error: LastError,
}

impl Accounts {
    /// Build from a store and a flag the caller sets once the store is ready.
    /// [`Accounts::namespace_known`] stays false unless the store is fed through
    /// [`watch`].
    pub fn new(store: Store<Meta>, synced: Arc<AtomicBool>) -> Self {
        Accounts {
            store,
            synced,
            namespaces: Namespaces::default(),
            last_error: LastError::default(),
        }
    }

    /// The watch's last error (cleared when the cache syncs), shared with readiness.
    pub fn last_error(&self) -> LastError {
        self.last_error.clone()
    }

    /// True when the cache holds at least one ServiceAccount in `namespace`. Every
    /// namespace has a `default` ServiceAccount, so this says whether the namespace
    /// exists, as far as the cache knows: false until the first list has arrived.
    /// A hash lookup under a read lock; no scan of the cache.
    pub fn namespace_known(&self, namespace: &str) -> bool {
        self.namespaces.contains(namespace)
    }

    /// The flag that turns true once the cache has synced.
    pub fn synced_flag(&self) -> Arc<AtomicBool> {
        self.synced.clone()
    }

    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Relaxed)
    }

    /// Resolves once the store has its first list (never, if the watch ends first).
    pub async fn wait_synced(&self) {
        if self.store.wait_until_ready().await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// The facts admission needs about `namespace/name`.
    pub fn context(&self, namespace: &str, name: &str) -> Context {
        if !self.is_synced() {
            tracing::warn!(
                namespace = %contract::text::Escaped(namespace),
                service_account = %contract::text::Escaped(name),
                sa_cache_synced = false,
                "service-account cache not synced yet; using only the pod's secret-injector.io/aws-role-arn"
            );
            return Context::default();
        }
        let key = ObjectRef::<Meta>::new_with(name, ()).within(namespace);
        match self.store.get(&key) {
            Some(sa) => {
                let annotations = sa.metadata.annotations.as_ref();
                Context::from_service_account(|name| {
                    annotations.and_then(|a| a.get(name)).map(String::as_str)
                })
            }
            None => Context::default(),
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
    let namespaces = accounts.namespaces.clone();
    let last_error = accounts.last_error.clone();
    // Api<PartialObjectMeta<_>> makes metadata-only list/watch requests.
    let api = kube::Api::<Meta>::all(client);
    let task = async move {
        let ready = {
            let store = store.clone();
            let last_error = last_error.clone();
            async move {
                if store.wait_until_ready().await.is_ok() {
                    synced.store(true, Ordering::Relaxed);
                    *last_error.lock().unwrap_or_else(PoisonError::into_inner) = None;
                    tracing::info!("service-account cache synced");
                }
            }
        };
        let events = watcher(api, watcher::Config::default().any_semantic()).default_backoff();
        let stream = cache_events(events, writer, namespaces).for_each(|r| {
            let last_error = last_error.clone();
            async move {
                if let Err(e) = r {
                    tracing::warn!(error = %e, "service-account watch error; retrying");
                    let text = contract::text::chain_line(&e);
                    *last_error.lock().unwrap_or_else(PoisonError::into_inner) = Some(text);
                }
            }
        });
        tokio::join!(ready, stream);
    };
    (accounts, task)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mutation::spec::{AZURE_CLIENT_ID_ANNOTATION, ROLE_ARN_ANNOTATION};
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

    /// A ServiceAccount as the API server sends it: managedFields, labels, owner
    /// references, finalizers and plenty of annotations besides the two we read.
    fn bulky(ns: &str, name: &str) -> Meta {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
            FieldsV1, ManagedFieldsEntry, OwnerReference,
        };
        let mut annotations: std::collections::BTreeMap<String, String> = (0..50)
            .map(|i| (format!("example.com/note-{i}"), "x".repeat(200)))
            .collect();
        annotations.insert(
            "kubectl.kubernetes.io/last-applied-configuration".into(),
            "{".repeat(4000),
        );
        annotations.insert(
            ROLE_ARN_ANNOTATION.into(),
            format!("arn:aws:iam::123456789012:role/{name}"),
        );
        annotations.insert(AZURE_CLIENT_ID_ANNOTATION.into(), format!("{name}-client"));
        Meta {
            types: Some(kube::core::TypeMeta {
                api_version: "meta.k8s.io/v1".into(),
                kind: "PartialObjectMetadata".into(),
            }),
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(ns.into()),
                uid: Some("0d6c1f6e-0000-4000-8000-000000000000".into()),
                resource_version: Some("12345".into()),
                labels: Some([("team".to_string(), "a".to_string())].into()),
                annotations: Some(annotations),
                finalizers: Some(vec!["example.com/keep".into()]),
                owner_references: Some(vec![OwnerReference {
                    api_version: "v1".into(),
                    kind: "ConfigMap".into(),
                    name: "owner".into(),
                    uid: "u".into(),
                    ..Default::default()
                }]),
                managed_fields: Some(vec![ManagedFieldsEntry {
                    manager: Some("kubectl".into()),
                    fields_v1: Some(FieldsV1(serde_json::json!({"f:metadata": {}}))),
                    ..Default::default()
                }]),
                ..Default::default()
            },
            _phantom: Default::default(),
        }
    }

    #[test]
    fn trim_keeps_only_name_namespace_and_the_two_annotations() {
        let mut sa = bulky("prod", "app");
        trim(&mut sa);
        assert_eq!(sa.types, None);
        let want = ObjectMeta {
            name: Some("app".into()),
            namespace: Some("prod".into()),
            annotations: Some(
                [
                    (
                        ROLE_ARN_ANNOTATION.to_string(),
                        "arn:aws:iam::123456789012:role/app".to_string(),
                    ),
                    (
                        AZURE_CLIENT_ID_ANNOTATION.to_string(),
                        "app-client".to_string(),
                    ),
                ]
                .into(),
            ),
            ..Default::default()
        };
        assert_eq!(sa.metadata, want);

        // Nothing worth keeping: no annotation map at all.
        let mut plain = bulky("prod", "plain");
        let a = plain.metadata.annotations.as_mut().unwrap();
        a.remove(ROLE_ARN_ANNOTATION);
        a.remove(AZURE_CLIENT_ID_ANNOTATION);
        trim(&mut plain);
        assert_eq!(plain.metadata.annotations, None);
        assert_eq!(plain.metadata.name.as_deref(), Some("plain"));
    }

    /// Feed hand-built watcher events through the same pipeline `watch` uses.
    struct Fed {
        tx: futures::channel::mpsc::UnboundedSender<Result<watcher::Event<Meta>, watcher::Error>>,
        stream: std::pin::Pin<Box<dyn Stream<Item = Result<Meta, watcher::Error>>>>,
        accounts: Accounts,
    }

    impl Fed {
        fn new() -> Fed {
            let (store, writer) = reflector::store::<Meta>();
            let accounts = Accounts::new(store, Arc::new(AtomicBool::new(true)));
            let (tx, rx) = futures::channel::mpsc::unbounded();
            let stream = Box::pin(cache_events(rx, writer, accounts.namespaces.clone()));
            Fed {
                tx,
                stream,
                accounts,
            }
        }

        fn send(&mut self, events: Vec<watcher::Event<Meta>>) {
            for e in events {
                self.tx.unbounded_send(Ok(e)).unwrap();
            }
            let mut cx = std::task::Context::from_waker(futures::task::noop_waker_ref());
            while let std::task::Poll::Ready(Some(r)) = self.stream.poll_next_unpin(&mut cx) {
                r.unwrap();
            }
        }

        fn known(&self, namespaces: &[&str]) -> Vec<bool> {
            namespaces
                .iter()
                .map(|ns| self.accounts.namespace_known(ns))
                .collect()
        }
    }

    #[test]
    fn the_stream_stores_trimmed_objects_and_tracks_namespaces() {
        use watcher::Event::*;
        let mut fed = Fed::new();
        assert_eq!(fed.known(&["a"]), [false]);

        fed.send(vec![
            Init,
            InitApply(bulky("a", "default")),
            InitApply(bulky("a", "app")),
            InitApply(bulky("b", "default")),
        ]);
        assert_eq!(
            fed.known(&["a", "b"]),
            [false, false],
            "not before InitDone"
        );
        fed.send(vec![InitDone]);
        assert_eq!(fed.known(&["a", "b", "c"]), [true, true, false]);

        // What the store holds is trimmed, and lookups still read the role.
        let stored = fed
            .accounts
            .store
            .get(&ObjectRef::new_with("app", ()).within("a"))
            .unwrap();
        assert_eq!(stored.metadata.managed_fields, None);
        assert_eq!(stored.metadata.annotations.as_ref().unwrap().len(), 2);
        assert_eq!(
            fed.accounts
                .context("a", "app")
                .service_account_role_arn
                .as_deref(),
            Some("arn:aws:iam::123456789012:role/app")
        );

        // A new namespace appears; a modification is not a second ServiceAccount.
        fed.send(vec![Apply(bulky("c", "default")), Apply(bulky("a", "app"))]);
        assert_eq!(fed.known(&["a", "c"]), [true, true]);
        fed.send(vec![Delete(bulky("a", "app"))]);
        assert_eq!(fed.known(&["a"]), [true], "a/default is still there");
        // A repeated Delete, or one for an object never seen, changes nothing.
        fed.send(vec![Delete(bulky("a", "app")), Delete(bulky("d", "x"))]);
        assert_eq!(fed.known(&["a", "d"]), [true, false]);
        fed.send(vec![Delete(bulky("a", "default"))]);
        assert_eq!(fed.known(&["a", "b", "c"]), [false, true, true]);

        // A relist replaces everything: c is gone, e is new.
        fed.send(vec![
            Init,
            InitApply(bulky("b", "default")),
            InitApply(bulky("e", "default")),
            InitDone,
        ]);
        assert_eq!(fed.known(&["a", "b", "c", "e"]), [false, true, false, true]);
        assert_eq!(fed.accounts.context("c", "default"), Context::default());
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
