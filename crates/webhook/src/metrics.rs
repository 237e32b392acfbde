//! Prometheus metrics of the webhook: one registry, served on the admin port.

use std::fmt::Write;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::admission::ReviewOutcome;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: ReviewOutcome,
}

impl EncodeLabelValue for ReviewOutcome {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NamespaceLabels {
    pub namespace: String,
}

/// The labels of `secret_injector_injected_image_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ImageLabels {
    /// The image of the injected containers.
    pub image: String,
    /// Where it comes from: `pod` (the webhook's own, read from its pod), `config`
    /// (`image` in the config or `SECRET_INJECTOR_IMAGE`) or `default` (built in).
    pub source: String,
    /// The webhook's own image, when known; empty otherwise.
    pub own: String,
}

/// The `namespace` label of injections in namespaces not known to exist. Not a valid
/// namespace name, so it cannot collide with one.
pub const UNKNOWN_NAMESPACE: &str = "_unknown";

pub struct Metrics {
    registry: Registry,
    pub requests: Family<OutcomeLabels, Counter>,
    pub latency: Histogram,
    pub injections: Family<NamespaceLabels, Counter>,
    pub tls_reloads: Counter,
    /// 1 once the ServiceAccount cache has synced. Exported only when there is a cache
    /// ([`Metrics::export_cache_synced`]).
    pub cache_synced: Gauge,
    /// One series, value 1: the injected image, its source and the webhook's own.
    pub injected_image: Family<ImageLabels, Gauge>,
    /// 1 when the configured image of the injected containers is not the webhook's own.
    pub image_mismatch: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("secret_injector");
        let requests = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "admission_requests",
            "Admission reviews answered, by outcome",
            requests.clone(),
        );
        // 50 µs .. ~1.6 s
        let latency = Histogram::new([
            0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
            0.5, 1.0,
        ]);
        registry.register(
            "admission_duration_seconds",
            "Time to answer an admission review, from body read to response",
            latency.clone(),
        );
        let injections = Family::<NamespaceLabels, Counter>::default();
        registry.register(
            "injections",
            "Pods injected, by namespace",
            injections.clone(),
        );
        let tls_reloads = Counter::default();
        registry.register(
            "tls_reloads",
            "Serving certificates loaded from changed files",
            tls_reloads.clone(),
        );
        let injected_image = Family::<ImageLabels, Gauge>::default();
        registry.register(
            "injected_image_info",
            "The image of the injected containers (label image), where it comes from (source: pod, config or default) and the webhook's own image (own, empty when unknown)",
            injected_image.clone(),
        );
        let image_mismatch = Gauge::default();
        registry.register(
            "injected_image_mismatch",
            "1 when the configured image of the injected containers differs from the webhook's own image",
            image_mismatch.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            injections,
            tls_reloads,
            cache_synced: Gauge::default(),
            injected_image,
            image_mismatch,
        }
    }

    /// Export `secret_injector_service_account_cache_synced` (there is a cache to watch).
    pub fn export_cache_synced(&mut self) {
        self.registry.register(
            "service_account_cache_synced",
            "1 once the ServiceAccount cache has synced, 0 before",
            self.cache_synced.clone(),
        );
    }

    /// Set the one series of `secret_injector_injected_image_info`, and the mismatch.
    pub fn set_injected_image(&self, labels: ImageLabels, mismatch: bool) {
        self.injected_image.clear();
        self.injected_image.get_or_create(&labels).set(1);
        self.image_mismatch.set(i64::from(mismatch));
    }

    /// Count one answered review. `namespace` labels the injections counter only when
    /// `known` (the namespace exists, as the ServiceAccount cache tells): the label
    /// comes from the request, and unchecked it would let one caller create a series
    /// per made-up name. Others count under [`UNKNOWN_NAMESPACE`].
    pub fn record(&self, outcome: ReviewOutcome, namespace: &str, known: bool, seconds: f64) {
        self.requests
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
        self.latency.observe(seconds);
        if outcome == ReviewOutcome::Injected {
            self.injections
                .get_or_create(&NamespaceLabels {
                    namespace: if known { namespace } else { UNKNOWN_NAMESPACE }.to_string(),
                })
                .inc();
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_outcomes_and_namespaces() {
        let m = Metrics::new();
        m.record(ReviewOutcome::Injected, "prod", true, 0.001);
        m.record(ReviewOutcome::Denied, "prod", true, 0.001);
        for i in 0..1000 {
            m.record(
                ReviewOutcome::Injected,
                &format!("made-up-{i}"),
                false,
                0.001,
            );
        }
        let text = m.encode();
        assert!(
            text.contains("secret_injector_admission_requests_total{outcome=\"injected\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("secret_injector_injections_total{namespace=\"prod\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("secret_injector_injections_total{namespace=\"_unknown\"} 1000"),
            "{text}"
        );
        assert_eq!(text.matches("secret_injector_injections_total{").count(), 2);
        assert!(
            text.contains("secret_injector_admission_duration_seconds_count 1002"),
            "{text}"
        );
    }

    #[test]
    fn the_injected_image_is_one_series_and_the_cache_gauge_only_with_a_cache() {
        let mut m = Metrics::new();
        assert!(!m.encode().contains("service_account_cache_synced"));
        m.export_cache_synced();
        assert!(
            m.encode()
                .contains("secret_injector_service_account_cache_synced 0")
        );
        m.cache_synced.set(1);
        assert!(
            m.encode()
                .contains("secret_injector_service_account_cache_synced 1")
        );
        let labels = |image: &str, source: &str, own: &str| ImageLabels {
            image: image.into(),
            source: source.into(),
            own: own.into(),
        };
        m.set_injected_image(labels("r/si:1", "config", ""), false);
        m.set_injected_image(labels("r/si:1", "config", "r/si:2"), true);
        let text = m.encode();
        assert_eq!(
            text.matches("secret_injector_injected_image_info{").count(),
            1,
            "{text}"
        );
        assert!(
            text.contains("secret_injector_injected_image_info{image=\"r/si:1\",source=\"config\",own=\"r/si:2\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("secret_injector_injected_image_mismatch 1"),
            "{text}"
        );
    }
}
