//! Annotations -> spec -> patch: never panics, and every patch applies to the pod it
//! was made for. Input: `key=value` lines, each becoming `secret-injector.io/<key>`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value, json};
use webhook::config::Config;
use webhook::mutation::pod::PodView;
use webhook::mutation::spec::Context;
use webhook::{Outcome, mutate};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut annotations = Map::new();
    for line in text.lines() {
        let (k, v) = line.split_once('=').unwrap_or((line, ""));
        annotations.insert(
            format!("secret-injector.io/{k}"),
            Value::String(v.to_string()),
        );
    }
    let mut pod = json!({
        "metadata": {"name": "app", "namespace": "team-a", "annotations": annotations},
        "spec": {
            "serviceAccountName": "app",
            "securityContext": {"runAsUser": 1000, "fsGroup": 2000},
            "initContainers": [{"name": "migrate", "image": "m"}],
            "containers": [
                {"name": "app", "image": "app", "command": ["/app"],
                 "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
                {"name": "istio-proxy", "image": "proxy"}
            ],
            "volumes": [{"name": "data", "emptyDir": {}}],
        },
    });
    let Ok(view) = serde_json::from_value::<PodView>(pod.clone()) else {
        return;
    };
    if let Outcome::Injected { patch, .. } = mutate(&view, &Config::default(), &Context::default())
    {
        json_patch::patch(&mut pod, &patch.to_json_patch()).expect("the patch applies to its pod");
    }
});
