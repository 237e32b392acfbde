//! `reload-url`: after the files changed, the sidecar POSTs the app's reload endpoint
//! once. The request stays in the pod: the URL must be on loopback, and a redirect is
//! never followed (it could send the request to another host).

use std::time::Duration;

/// The client for the app's reload endpoint: no redirects, no proxy, a short timeout.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .expect("a plain HTTP client builds")
}

/// POST `url`; the outcome is logged, never retried (the files are already in place,
/// and the next change asks again).
pub(super) async fn tell(url: &str) {
    if let Some(problem) = contract::reload::problem(url) {
        tracing::warn!(problem = %problem, "not calling the reload URL; the new files are in place");
        return;
    }
    match client().post(url).send().await {
        Ok(resp) if resp.status().is_success() => {
            tracing::info!(url = %url, status = resp.status().as_u16(), "asked the app to reload");
        }
        Ok(resp) if resp.status().is_redirection() => {
            tracing::warn!(url = %url, status = resp.status().as_u16(), "the app's reload endpoint answered a redirect, which is not followed (the sidecar calls no other host); the new files are in place")
        }
        Ok(resp) => {
            tracing::warn!(url = %url, status = resp.status().as_u16(), "the app's reload endpoint refused; the new files are in place")
        }
        Err(e) => {
            tracing::warn!(url = %url, error = %contract::text::root_cause_line(&e), "cannot reach the app's reload endpoint; the new files are in place")
        }
    }
}
