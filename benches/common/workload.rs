//! Pods of realistic shapes for the benchmarks (shared by `admission` and `load`).

use serde_json::{Value, json};

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

pub fn pod(containers: usize, secrets: usize, templates: usize) -> Value {
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
