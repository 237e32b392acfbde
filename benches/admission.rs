//! The admission hot path: AdmissionReview bytes -> response bytes, for a small, a
//! typical and a large pod, against a baseline measured in the same run: parsing the
//! same body into a `serde_json::Value` and writing a canned response of the same size
//! (what any webhook must pay before it does anything).

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};

use secret_injector::admission::{request_for, review};
use secret_injector::config::Config;
use secret_injector::spec::Context;

fn container(i: usize) -> Value {
    json!({
        "name": format!("c{i}"),
        "image": format!("registry.example/app-{i}:1.2.3"),
        "command": ["/app"],
        "args": ["--port", "8080"],
        "env": [{"name": "LOG", "value": "info"}, {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
        "ports": [{"containerPort": 8080, "name": "http"}],
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
        "volumeMounts": [{"name": "data", "mountPath": format!("/data/{i}")}],
    })
}

fn pod(containers: usize, secrets: usize, templates: usize) -> Value {
    let mut annotations = serde_json::Map::new();
    for i in 0..secrets {
        let r = if i % 2 == 0 {
            format!("vault:secret/data/prod/app/s{i}#password")
        } else {
            format!("aws:prod/app/s{i}#key")
        };
        annotations.insert(format!("secret-injector.io/secret-s{i}"), r.into());
    }
    for i in 0..templates {
        annotations.insert(
            format!("secret-injector.io/template-t{i}.yaml"),
            format!(
                "user: {{{{ secrets.s0.username }}}}\npassword: {{{{ secrets.s{}.password }}}}\n",
                i % secrets.max(1)
            )
            .into(),
        );
    }
    annotations.insert(
        "kubectl.kubernetes.io/restartedAt".into(),
        "2026-11-01T00:00:00Z".into(),
    );
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": "app-6d8f-", "labels": {"app": "app", "pod-template-hash": "6d8f"}, "annotations": annotations},
        "spec": {
            "serviceAccountName": "app",
            "containers": (0..containers).map(container).collect::<Vec<_>>(),
            "volumes": [{"name": "data", "emptyDir": {}}],
        }
    })
}

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
    group.finish();

    // What the narrow PodView saves over a full k8s-openapi Pod.
    let mut group = c.benchmark_group("pod_deserialize");
    let typical = serde_json::to_vec(&cases[1].1).unwrap();
    group.bench_function("podview", |b| {
        b.iter(|| {
            serde_json::from_slice::<secret_injector::pod::PodView>(black_box(&typical)).unwrap()
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
