//! `secret-injector.io/reload-url`: the app's reload endpoint, which the refresh sidecar
//! POSTs after the files changed. Checked at admission and again by the sidecar before
//! it calls it: the request never leaves the pod.

/// Why `raw` is not an acceptable reload URL (`None`: it is). The text quotes the URL,
/// which is not a secret (it is in the pod spec).
pub fn problem(raw: &str) -> Option<String> {
    match url::Url::parse(raw) {
        Err(e) => Some(format!("`{raw}` is not a URL ({e})")),
        Ok(u) if u.scheme() != "http" => Some(format!(
            "`{raw}` must be http:// (the request stays inside the pod)"
        )),
        Ok(u) if !is_loopback(&u) => Some(format!(
            "`{raw}` must point at the pod itself (127.0.0.1, localhost or [::1]): the sidecar does not call other hosts"
        )),
        Ok(u) if !u.username().is_empty() || u.password().is_some() => {
            Some(format!("`{raw}` must not carry credentials"))
        }
        Ok(_) => None,
    }
}

/// The pod's own loopback, by the names admission accepts.
pub fn is_loopback(u: &url::Url) -> bool {
    matches!(u.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_http_on_the_pods_loopback() {
        for ok in [
            "http://127.0.0.1:9090/-/reload",
            "http://localhost:8080/reload",
            "http://[::1]:1/x",
        ] {
            assert_eq!(problem(ok), None, "{ok}");
        }
        for (bad, says) in [
            ("https://127.0.0.1/x", "must be http://"),
            ("http://10.0.0.1/x", "must point at the pod itself"),
            ("http://127.0.0.1.nip.io/x", "must point at the pod itself"),
            ("http://user:pw@127.0.0.1/x", "must not carry credentials"),
            ("127.0.0.1:9090", "is not a URL"),
        ] {
            let p = problem(bad).unwrap_or_else(|| panic!("{bad} accepted"));
            assert!(p.contains(says), "{bad}: {p}");
        }
    }
}
