//! The pure mutation, run by the webhook (and `inject -f`): pod annotations
//! ([`pod::PodView`]) -> a validated [`spec::InjectionSpec`] -> a JSON [`patch`]. No I/O.

pub mod patch;
pub mod pod;
pub mod spec;
mod wire;

use crate::config::Config;
use pod::PodView;
use spec::{Context, Decision, Problems};

/// What the webhook does with one pod.
#[derive(Debug)]
pub enum Outcome {
    Skipped(spec::Skip),
    Injected {
        patch: patch::Patch,
        warnings: Vec<String>,
    },
    Denied(Problems),
}

/// The whole pure mutation: annotations -> spec -> patch.
pub fn mutate(pod: &PodView, config: &Config, ctx: &Context) -> Outcome {
    match spec::parse(pod, config, ctx) {
        Ok(Decision::Skip(reason)) => Outcome::Skipped(reason),
        Ok(Decision::Inject(spec)) => {
            let mut warnings = spec.warnings.clone();
            warnings.extend(patch::aws_identity_warning(pod, &spec));
            Outcome::Injected {
                patch: patch::build(pod, &spec, config),
                warnings,
            }
        }
        Err(problems) => Outcome::Denied(problems),
    }
}
