//! The webhook over HTTPS, as the API server calls it: AdmissionReview v1 bodies,
//! a client that verifies the CA, the returned patch applied independently.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use base64::Engine;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

use crate::util::{self, Webhook};
use webhook::admission::request_for;

use crate::util::rt;

async fn post(client: &reqwest::Client, w: &Webhook, body: Vec<u8>) -> (u16, Vec<u8>) {
    let resp = client
        .post(w.url())
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("request failed: {e:?}\n{}", w.log_text()));
    let status = resp.status().as_u16();
    (status, resp.bytes().await.unwrap().to_vec())
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .into_iter()
        .flatten()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

/// Every fixture workload's pod goes through the webhook; the patch, applied by an
/// independent implementation, yields a valid Pod that keeps everything it had.
#[test]
fn fixtures_round_trip_over_https() {
    let w = Webhook::start(&[]);
    let client = w.client();
    let rt = rt();
    let mut fixtures: Vec<_> = std::fs::read_dir(util::repo().join("tests/fixtures/workloads"))
        .unwrap()
        .map(|e| e.unwrap().path())
        // (<name>.warnings beside a fixture holds what inject -f warns about it)
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    fixtures.extend(
        std::fs::read_dir(util::repo().join("examples"))
            .unwrap()
            .map(|e| e.unwrap().path()),
    );
    let mut injected = 0;
    for path in fixtures {
        let rel = path
            .strip_prefix(util::repo())
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        let docs = util::fixture_docs(&rel);
        // The webhook runs with `--kube off` here, so the Azure Workload Identity
        // annotations that its ServiceAccount cache would read from the example's
        // ServiceAccount are given as the pod annotations that stand in for them.
        let standing_in: Vec<(String, Value)> = docs
            .iter()
            .filter(|d| d["kind"] == "ServiceAccount")
            .flat_map(|d| {
                d["metadata"]["annotations"]
                    .as_object()
                    .cloned()
                    .unwrap_or_default()
            })
            .filter_map(|(k, v)| {
                let key = k.strip_prefix("azure.workload.identity/")?;
                Some((format!("secret-injector.io/azure-{key}"), v))
            })
            .collect();
        for doc in docs {
            if !matches!(
                doc["kind"].as_str(),
                Some(
                    "Pod"
                        | "Deployment"
                        | "StatefulSet"
                        | "DaemonSet"
                        | "ReplicaSet"
                        | "Job"
                        | "CronJob"
                )
            ) {
                continue;
            }
            let mut pod = util::pod_from_workload(&doc);
            for (k, v) in &standing_in {
                pod["metadata"]["annotations"][k] = v.clone();
            }
            let (status, body) =
                rt.block_on(post(&client, &w, request_for(&pod, "team-a", "CREATE")));
            assert_eq!(status, 200, "{rel}: {}", String::from_utf8_lossy(&body));
            let review: Value = serde_json::from_slice(&body).unwrap();
            let resp = &review["response"];
            assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
            assert_eq!(resp["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
            assert_eq!(resp["allowed"], true, "{rel}: {resp}");
            assert_eq!(resp["patchType"], "JSONPatch");
            let b64 = resp["patch"]
                .as_str()
                .unwrap_or_else(|| panic!("{rel}: patch is not a string: {resp}"));
            let patch: Value = serde_json::from_slice(
                &base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .unwrap(),
            )
            .unwrap();

            let mut ours = pod.clone();
            let typed_patch: json_patch::Patch = serde_json::from_value(patch.clone()).unwrap();
            json_patch::patch(&mut ours, &typed_patch).unwrap();
            let patched = util::apply_patch_python(&pod, &patch);
            assert_eq!(patched, ours, "{rel}: implementations disagree");
            let typed: Pod = serde_json::from_value(patched.clone())
                .unwrap_or_else(|e| panic!("{rel}: not a Pod: {e}"));
            let spec = typed.spec.unwrap();

            // Nothing lost: all containers, init containers and volumes remain, in order.
            let before_c = names(&pod["spec"]["containers"]);
            assert_eq!(names(&patched["spec"]["containers"]), before_c, "{rel}");
            let inits = names(&patched["spec"]["initContainers"]);
            // the init container, or with a refresh interval the refresh sidecar
            let refreshing = pod
                .to_string()
                .contains("secret-injector.io/refresh-interval");
            let injected_name = if refreshing {
                "secret-injector-refresh"
            } else {
                "secret-injector-init"
            };
            assert_eq!(inits[0], injected_name, "{rel}");
            assert_eq!(
                inits[1..].to_vec(),
                names(&pod["spec"]["initContainers"]),
                "{rel}"
            );
            let vols = names(&patched["spec"]["volumes"]);
            let before_v = names(&pod["spec"]["volumes"]);
            assert_eq!(vols[..before_v.len()].to_vec(), before_v, "{rel}");
            let annotations = pod["metadata"]["annotations"].as_object().unwrap();
            let has_files = annotations.keys().any(|k| {
                k.starts_with("secret-injector.io/secret-")
                    || k.starts_with("secret-injector.io/template-")
            });
            assert_eq!(
                vols.contains(&"secret-injector-files".to_string()),
                has_files,
                "{rel}"
            );

            // Secrets only ever land in memory; tokens go only to the injected container.
            for v in
                spec.volumes.as_ref().unwrap().iter().filter(|v| {
                    v.name == "secret-injector-files" || v.name == "secret-injector-env"
                })
            {
                assert_eq!(
                    v.empty_dir.as_ref().unwrap().medium.as_deref(),
                    Some("Memory"),
                    "{rel}"
                );
            }
            for c in &spec.containers {
                for m in c.volume_mounts.iter().flatten() {
                    assert!(
                        !m.name.starts_with("secret-injector-token"),
                        "{rel}: token in {}",
                        c.name
                    );
                    if m.name.starts_with("secret-injector-") {
                        assert_eq!(m.read_only, Some(true), "{rel}");
                    }
                }
            }
            let init = &spec.init_containers.as_ref().unwrap()[0];
            let sc = init.security_context.as_ref().unwrap();
            assert_eq!(sc.run_as_non_root, Some(true));
            assert_eq!(sc.allow_privilege_escalation, Some(false));
            assert_eq!(sc.read_only_root_filesystem, Some(true));
            assert_eq!(
                sc.capabilities.as_ref().unwrap().drop.as_deref(),
                Some(&["ALL".to_string()][..])
            );
            assert_eq!(sc.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
            assert!(init.resources.as_ref().unwrap().limits.is_some());
            assert_eq!(
                patched["metadata"]["annotations"]["secret-injector.io/status"],
                "injected"
            );

            // Containers that were not selected are byte-for-byte unchanged.
            let selected: BTreeSet<String> =
                match pod["metadata"]["annotations"]["secret-injector.io/containers"].as_str() {
                    Some(list) => list.split(',').map(|s| s.trim().to_string()).collect(),
                    None => before_c
                        .iter()
                        .filter(|n| !n.ends_with("-proxy"))
                        .cloned()
                        .collect(),
                };
            for (i, name) in before_c.iter().enumerate() {
                if !selected.contains(name) {
                    assert_eq!(
                        patched["spec"]["containers"][i], pod["spec"]["containers"][i],
                        "{rel}: {name} changed"
                    );
                }
            }

            // Reinvocation: the patched pod is left alone.
            let (_, again) =
                rt.block_on(post(&client, &w, request_for(&patched, "team-a", "CREATE")));
            let again: Value = serde_json::from_slice(&again).unwrap();
            assert_eq!(again["response"]["allowed"], true);
            assert!(
                again["response"].get("patch").is_none(),
                "{rel}: second pass patched"
            );
            injected += 1;
        }
    }
    assert!(injected >= 10, "only {injected} workloads exercised");
    let metrics = util::http_get(w.admin, "/metrics").unwrap();
    assert!(
        metrics.contains(&format!(
            "secret_injector_admission_requests_total{{outcome=\"injected\"}} {injected}"
        )),
        "{metrics}"
    );
    // --kube off: no cache says that team-a exists, so the label is not trusted.
    assert!(
        metrics.contains(&format!(
            "secret_injector_injections_total{{namespace=\"_unknown\"}} {injected}"
        )),
        "{metrics}"
    );
    assert!(!metrics.contains("namespace=\"team-a\""), "{metrics}");
}

#[test]
fn denials_name_the_annotation_and_the_server_survives_junk() {
    let w = Webhook::start(&["--body-limit", "65536"]);
    let client = w.client();
    let rt = rt();
    rt.block_on(async {
        // Junk bodies: a 400 with a reason, never a 500 or a hang.
        for junk in [
            &b""[..],
            b"{",
            b"null",
            b"\xff\xfe\x00",
            b"{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\"}",
            b"[1,2,3]",
        ] {
            let (status, body) = post(&client, &w, junk.to_vec()).await;
            assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
            assert!(!body.is_empty());
        }
        // Deep nesting is rejected by the JSON parser's recursion limit, not a stack overflow.
        let deep = format!("{}{}", "[".repeat(20_000), "]".repeat(20_000));
        let (status, _) = post(&client, &w, deep.into_bytes()).await;
        assert_eq!(status, 400);
        // Over the body limit: 413.
        let (status, _) = post(&client, &w, vec![b' '; 70_000]).await;
        assert_eq!(status, 413);

        // Still serving: a bad pod is denied with every problem named.
        let pod = json!({
            "metadata": {"generateName": "api-", "annotations": {
                "secret-injector.io/secret-db": "vualt:secret/data/db#password",
                "secret-injector.io/file-mode-db": "0777",
                "secret-injector.io/containers": "ap",
                "secret-injector.io/refresh-intervall": "5m",
            }},
            "spec": {"containers": [{"name": "app", "image": "app"}]},
        });
        let (status, body) = post(&client, &w, request_for(&pod, "team-a", "CREATE")).await;
        assert_eq!(status, 200);
        let review: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(review["response"]["allowed"], false);
        let msg = review["response"]["status"]["message"].as_str().unwrap();
        for needle in [
            "secret-injector.io/secret-db",
            "did you mean `vault`",
            "secret-injector.io/file-mode-db",
            "secret-injector.io/containers",
            "did you mean `app`",
            "did you mean `secret-injector.io/refresh-interval`",
        ] {
            assert!(msg.contains(needle), "missing {needle:?} in {msg}");
        }

        // A non-Pod kind and a non-CREATE operation are allowed without a patch.
        let mut review =
            serde_json::from_slice::<Value>(&request_for(&pod, "team-a", "UPDATE")).unwrap();
        let (_, body) = post(&client, &w, serde_json::to_vec(&review).unwrap()).await;
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["response"]["allowed"], true);
        assert!(v["response"].get("patch").is_none());
        review["request"]["operation"] = "CREATE".into();
        review["request"]["kind"] = json!({"group": "", "version": "v1", "kind": "Secret"});
        let (_, body) = post(&client, &w, serde_json::to_vec(&review).unwrap()).await;
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["response"]["allowed"], true);
        assert!(v["response"].get("patch").is_none());
    });
    let metrics = util::http_get(w.admin, "/metrics").unwrap();
    assert!(metrics.contains("outcome=\"invalid\""), "{metrics}");
    assert!(metrics.contains("outcome=\"denied\"} 1"), "{metrics}");
    assert_eq!(util::http_get(w.admin, "/healthz").unwrap(), "ok\n");
}

/// cert-manager-style rotation while requests flow: no request fails, and new
/// connections get the new certificate without a restart.
#[test]
fn certificate_rotation_during_requests() {
    let w = Webhook::start(&["--tls-reload-interval", "100ms"]);
    let rt = rt();
    let first = util::pem_der(&w.certs.path().join("tls.crt"));
    rt.block_on(async {
        assert_eq!(util::peer_leaf(w.port, &w.ca()).await, first);
        let url = w.url();
        let ca = w.ca();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut load = Vec::new();
        for _ in 0..4 {
            let url = url.clone();
            let ca = ca.clone();
            let stop = stop.clone();
            load.push(tokio::spawn(async move {
                let mut ok = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    // a new client each time: a new TLS handshake per request
                    let client = util::https_client(&ca);
                    let pod = json!({"metadata": {"name": "p", "annotations": {"secret-injector.io/secret-a": "vault:kv/a"}}, "spec": {"containers": [{"name": "c"}]}});
                    let resp = client.post(&url).body(request_for(&pod, "ns", "CREATE")).send().await.expect("request during rotation");
                    assert_eq!(resp.status(), 200);
                    ok += 1;
                }
                ok
            }));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Rotate: new key and certificate from the same CA, written file by file (so the
        // server sees a mismatched pair for a moment and must keep the old one).
        let next = tempfile::tempdir().unwrap();
        util::make_certs(next.path(), Some(w.certs.path()));
        for f in ["tls.key", "tls.crt"] {
            let tmp = w.certs.path().join(format!(".{f}.new"));
            std::fs::copy(next.path().join(f), &tmp).unwrap();
            std::fs::rename(&tmp, w.certs.path().join(f)).unwrap();
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let rotated = util::pem_der(&w.certs.path().join("tls.crt"));
        assert_ne!(rotated, first);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if util::peer_leaf(w.port, &w.ca()).await == rotated {
                break;
            }
            assert!(Instant::now() < deadline, "new certificate never served\n{}", w.log_text());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut total = 0;
        for t in load {
            total += t.await.unwrap();
        }
        assert!(total > 20, "only {total} requests during rotation");
    });
    assert!(
        w.log_text().contains("serving certificate reloaded"),
        "{}",
        w.log_text()
    );
    let metrics = util::http_get(w.admin, "/metrics").unwrap();
    assert!(
        metrics.contains("secret_injector_tls_reloads_total 1"),
        "{metrics}"
    );
}

#[test]
fn sigterm_drains_and_exits_cleanly() {
    let mut w = Webhook::start(&["--shutdown-delay", "2s"]);
    let pid = w.child.id().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    // During the delay: not ready, yet still answering reviews.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        util::http_get(w.admin, "/readyz")
            .unwrap()
            .starts_with("not ready")
    );
    let pod = json!({"metadata": {"name": "p", "annotations": {"secret-injector.io/secret-a": "vault:kv/a"}}, "spec": {"containers": [{"name": "c"}]}});
    let (status, _) = rt().block_on(post(&w.client(), &w, request_for(&pod, "ns", "CREATE")));
    assert_eq!(status, 200, "a review during the shutdown delay");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(code) = w.child.try_wait().unwrap() {
            assert!(code.success(), "exit {code:?}\n{}", w.log_text());
            break;
        }
        assert!(Instant::now() < deadline, "did not stop after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(w.log_text().contains("shutting down"), "{}", w.log_text());
}

#[test]
fn self_signed_serves_with_the_written_ca() {
    let dir = tempfile::tempdir().unwrap();
    let port = util::free_port();
    let admin = util::free_port();
    let mut child = util::bin()
        .args([
            "serve",
            "--self-signed",
            "--self-signed-dir",
            dir.path().to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--admin-listen",
            &format!("127.0.0.1:{admin}"),
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while util::http_get(admin, "/readyz")
        .map(|b| !b.starts_with("ready"))
        .unwrap_or(true)
    {
        assert!(Instant::now() < deadline, "not ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    let client = util::https_client(&dir.path().join("ca.crt"));
    let pod = json!({"metadata": {"name": "p", "annotations": {"secret-injector.io/secret-a": "aws:prod/a"}}, "spec": {"containers": [{"name": "c"}]}});
    let (status, body) = rt().block_on(async {
        let r = client
            .post(format!("https://localhost:{port}/mutate"))
            .body(request_for(&pod, "ns", "CREATE"))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.bytes().await.unwrap())
    });
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("JSONPatch"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(dir.path().join("ca.crt").to_str().unwrap()),
        "{stderr}"
    );
}

/// A client that never finishes its headers (slowloris) is disconnected after the
/// header timeout instead of holding a connection forever.
#[test]
fn slow_headers_are_cut_off() {
    let w = Webhook::start(&["--header-timeout", "1s"]);
    rt().block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let cfg = {
            let mut c = util::rustls_client_config(&w.ca());
            c.alpn_protocols = vec![b"http/1.1".to_vec()];
            c
        };
        let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg));
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", w.port))
            .await
            .unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        tls.write_all(b"POST /mutate HTTP/1.1\r\nHost: localhost\r\n")
            .await
            .unwrap();
        let start = Instant::now();
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut buf)).await;
        assert!(read.is_ok(), "connection still open after 10 s");
        let elapsed = start.elapsed();
        assert!(elapsed < Duration::from_secs(5), "closed after {elapsed:?}");
    });
    // and the server still serves
    assert_eq!(util::http_get(w.admin, "/readyz").unwrap(), "ready\n");
}

/// A client that connects and never starts the TLS handshake is disconnected after the
/// same timeout (the handshake has its own, previously 10 s regardless of the flag).
#[test]
fn silent_connections_are_cut_off_before_the_handshake() {
    let w = Webhook::start(&["--header-timeout", "1s"]);
    rt().block_on(async {
        use tokio::io::AsyncReadExt;
        let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", w.port))
            .await
            .unwrap();
        let start = Instant::now();
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut buf)).await;
        assert!(read.is_ok(), "connection still open after 10 s");
        let elapsed = start.elapsed();
        assert!(elapsed < Duration::from_secs(5), "closed after {elapsed:?}");
    });
    assert_eq!(util::http_get(w.admin, "/readyz").unwrap(), "ready\n");
}
