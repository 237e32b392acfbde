//! The admission hot path: AdmissionReview bytes -> response bytes, for a small, a
//! typical and a large pod, against a baseline measured in the same run: parsing the
//! same body into a `serde_json::Value` and writing a canned response of the same size
//! (what any webhook must pay before it does anything).
//!
//! The `webhook` rows see each template again and again, so after the first review
//! its check comes from the template cache, as for the pods of one workload. The
//! `webhook_cold_templates` row gives every review templates never seen before (a
//! comment with a counter), so it pays for parsing and checking them: the first pod
//! of a workload, or a flood of distinct templates.

use std::hint::black_box;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::Value;

#[path = "common/workload.rs"]
mod workload;
use workload::pod;

use webhook::admission::{request_for, review};
use webhook::config::Config;
use webhook::mutation::spec::Context;

fn bench(c: &mut Criterion) {
    let config = Config::default();
    let cases = [
        ("small", pod(1, 1, 0)),
        ("typical", pod(3, 5, 2)),
        ("large", pod(20, 50, 0)),
    ];
    let mut group = c.benchmark_group("review");
    for (name, pod) in &cases {
        let body = request_for(pod, "prod", "CREATE");
        let (response, _) = review(&body, &config, |_, _| Context::default()).unwrap();
        let canned = vec![b' '; response.len()];
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(
            BenchmarkId::new("baseline_parse_only", name),
            &body,
            |b, body| {
                b.iter(|| {
                    let v: Value = serde_json::from_slice(black_box(body)).unwrap();
                    black_box(v);
                    black_box(canned.clone())
                })
            },
        );
        group.bench_with_input(BenchmarkId::new("webhook", name), &body, |b, body| {
            b.iter(|| review(black_box(body), &config, |_, _| Context::default()).unwrap())
        });
    }
    let mut seen = 0u64;
    group.bench_function(BenchmarkId::new("webhook_cold_templates", "typical"), |b| {
        b.iter_batched(
            || {
                seen += 1;
                let mut pod = cases[1].1.clone();
                let annotations = pod["metadata"]["annotations"].as_object_mut().unwrap();
                for (key, value) in annotations.iter_mut() {
                    if key.starts_with("secret-injector.io/template-") {
                        let text = format!("{}{{# {seen} #}}\n", value.as_str().unwrap());
                        *value = text.into();
                    }
                }
                request_for(&pod, "prod", "CREATE")
            },
            |body| review(black_box(&body), &config, |_, _| Context::default()).unwrap(),
            BatchSize::SmallInput,
        )
    });
    group.finish();

    // What the narrow PodView saves over a full k8s-openapi Pod.
    let mut group = c.benchmark_group("pod_deserialize");
    let typical = serde_json::to_vec(&cases[1].1).unwrap();
    group.bench_function("podview", |b| {
        b.iter(|| {
            serde_json::from_slice::<webhook::mutation::pod::PodView>(black_box(&typical)).unwrap()
        })
    });
    group.bench_function("k8s_openapi_pod", |b| {
        b.iter(|| {
            serde_json::from_slice::<k8s_openapi::api::core::v1::Pod>(black_box(&typical)).unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
