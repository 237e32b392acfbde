//! A read refused with 403 or 404 on a path that looks like KV v2 without `data/`:
//! the mount holding it (`sys/internal/ui/mounts/<path>`, only on that failure path),
//! and the references as they should have been written.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::{AgentError, Vault, one_line};
use contract::reference::SecretRef;
use contract::text::Escaped;

/// The mount points of KV engines as they are usually named: when the mount cannot be
/// looked up, a path under one of these without `data/` gets a hint, hedged.
const KV_MOUNT_NAMES: [&str; 6] = ["secret", "secrets", "kv", "kv2", "kv-v2", "kvv2"];

/// The KV v2 API paths under a mount that are read as they are (`data/` holds the
/// secrets, `metadata/` and `subkeys/` describe them).
fn has_kv2_prefix(rest: &str) -> bool {
    ["data/", "metadata/", "subkeys/"]
        .iter()
        .any(|p| rest.starts_with(p))
}

/// Whether a refused read of `path` is worth looking up its mount: not when its second
/// segment already is KV v2's `data`, `metadata` or `subkeys` (the usual one-segment
/// mount, written right: a plain refusal), and not for a path of one segment.
pub(super) fn may_lack_data(path: &str) -> bool {
    let mut segments = path.split('/');
    segments.next();
    !matches!(
        segments.next(),
        None | Some("data" | "metadata" | "subkeys")
    )
}

/// `sys/internal/ui/mounts/<path>`: the mount holding a path.
#[derive(Deserialize)]
struct MountAnswer {
    data: MountInfo,
}

#[derive(Deserialize)]
struct MountInfo {
    /// The mount point, with a trailing `/` (`secret/`).
    #[serde(default)]
    path: String,
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    options: Option<Map<String, Value>>,
}

impl MountInfo {
    fn is_kv2(&self) -> bool {
        self.kind == "kv"
            && self
                .options
                .as_ref()
                .and_then(|o| o.get("version"))
                .is_some_and(|v| v.as_str() == Some("2") || v.as_u64() == Some(2))
    }
}

/// A KV v2 path read without `data/`, and the references that fix it.
#[derive(Debug)]
pub(super) struct Kv2Hint {
    /// The mount point, with its trailing `/`.
    mount: String,
    /// Whether Vault said the mount is KV v2 (otherwise a guess by its name).
    known: bool,
    /// The references as written, with `data/` after the mount.
    written: Vec<SecretRef>,
}

/// How many corrected references a message shows.
const SHOWN_REFS: usize = 3;

impl Kv2Hint {
    /// "the reference as `vault:secret/data/a#k`", or "the references as `…` and `…`"
    /// (the first [`SHOWN_REFS`], then how many more).
    fn references(&self) -> String {
        let mut refs: Vec<String> = self
            .written
            .iter()
            .take(SHOWN_REFS)
            .map(|r| format!("`{r}`"))
            .collect();
        if self.written.len() > SHOWN_REFS {
            refs.push(format!("{} more", self.written.len() - SHOWN_REFS));
        }
        let refs = match refs.split_last() {
            Some((last, init)) if !init.is_empty() => format!("{} and {last}", init.join(", ")),
            _ => refs.concat(),
        };
        if self.written.len() == 1 {
            format!("the reference as {refs}")
        } else {
            format!("the references as {refs}")
        }
    }
}

/// The references of the plan that name location `r` (sorted, once each), or `r` itself.
fn written_as(r: &SecretRef, written: &[SecretRef]) -> Vec<SecretRef> {
    let location = r.location();
    let mut refs: Vec<SecretRef> = written
        .iter()
        .filter(|w| w.location() == location)
        .cloned()
        .collect();
    refs.sort_by_cached_key(ToString::to_string);
    refs.dedup();
    if refs.is_empty() {
        refs.push(location);
    }
    refs
}

/// `refs` with `data/` after `mount` (a prefix of their path), `#key` and `?version` kept.
fn corrected(refs: &[SecretRef], mount: &str) -> Vec<SecretRef> {
    refs.iter()
        .map(|r| SecretRef {
            path: format!("{mount}data/{}", &r.path[mount.len()..]),
            ..r.clone()
        })
        .collect()
}

/// A read refused with 403 or 404 where the path looks like a KV v2 path without
/// `data/`: the usual message, with the corrected references in place of (when the mount
/// is known to be KV v2) or after (a guess) the advice to check the policies. The same
/// kind as [`status_error`]'s: permanent.
pub(super) fn read_refused(
    code: u16,
    errors: &[String],
    what: &str,
    identity: &str,
    hint: &Kv2Hint,
) -> AgentError {
    let detail = if errors.is_empty() {
        String::new()
    } else {
        format!(": {}", one_line(errors))
    };
    // The mount is a prefix of the path Vault was asked for, escaped all the same; the
    // references are the plan's own, as the message's start names them.
    let mount = Escaped(&hint.mount);
    let refs = hint.references();
    let at = hint.written.first().map_or("", |r| r.path.as_str());
    AgentError::permanent(match (code, hint.known) {
        (403, true) => format!(
            "{what}: permission denied (HTTP 403) for {identity}{detail}; `{mount}` is a KV v2 mount: its secrets are read at `{at}`; write {refs}"
        ),
        (403, false) => format!(
            "{what}: permission denied (HTTP 403) for {identity}{detail}; check the role's policies; if `{mount}` is a KV v2 mount, write {refs}"
        ),
        (_, true) => format!(
            "{what}: not found (HTTP {code}){detail}; `{mount}` is a KV v2 mount: its secrets are read at `{at}`; write {refs}"
        ),
        (_, false) => format!(
            "{what}: not found (HTTP {code}){detail}; if `{mount}` is a KV v2 mount, write {refs}"
        ),
    })
}

impl Vault {
    /// Why a read of `r` refused with 403 or 404 may be a KV v2 path without `data/`:
    /// the mount holding it, from `sys/internal/ui/mounts/<path>` (answered to any token
    /// with a capability under the mount), or, when that is refused or fails, a guess by
    /// the path's shape. Only on that failure path; a failure of the lookup itself is
    /// only logged, the read's own error stands.
    pub(super) async fn kv2_hint(&self, r: &SecretRef, written: &[SecretRef]) -> Option<Kv2Hint> {
        let what = format!("look up the mount of {}", r.location());
        let path = format!("sys/internal/ui/mounts/{}", r.path);
        let found = match self.call(reqwest::Method::GET, &path, None, &what).await {
            Ok(answer) => match serde_json::from_slice::<MountAnswer>(&answer.body) {
                Ok(m) => Some(m.data),
                Err(_) => {
                    tracing::debug!(%what, "the answer is not a mount; guessing by the path's shape");
                    None
                }
            },
            Err(e) => {
                tracing::debug!(error = %e, "cannot look up the mount; guessing by the path's shape");
                None
            }
        };
        let written = written_as(r, written);
        match found {
            // The answer names the mount: a prefix of the path, up to a `/` (anything
            // else is not an answer about this path, so it is not trusted).
            Some(m) if m.path.len() > 1 && m.path.ends_with('/') && r.path.starts_with(&m.path) => {
                let (mount, rest) = r.path.split_at(m.path.len());
                (m.is_kv2() && !rest.is_empty() && !has_kv2_prefix(rest)).then(|| Kv2Hint {
                    mount: mount.to_string(),
                    known: true,
                    written: corrected(&written, mount),
                })
            }
            _ => {
                let (first, rest) = r.path.split_once('/')?;
                (KV_MOUNT_NAMES.contains(&first.to_ascii_lowercase().as_str())
                    && !rest.is_empty()
                    && !has_kv2_prefix(rest))
                .then(|| {
                    let mount = format!("{first}/");
                    Kv2Hint {
                        written: corrected(&written, &mount),
                        mount,
                        known: false,
                    }
                })
            }
        }
    }
}
