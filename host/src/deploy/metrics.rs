//! What the deployer shows in the metrics: the share of each serving
//! version (`nimbus_function_version_percent`) and each change or refusal
//! (`nimbus_deployments_total`).

use super::{Control, Deployer, MAX_PERCENT};
use crate::telemetry::VersionLabels;

impl Deployer {
    /// Publishes the serving versions of `functions[index]` as the
    /// `nimbus_function_version_percent` gauge.
    pub(super) fn show_versions(&self, control: &mut Control, index: usize) {
        let app = self.app();
        let function = &app.functions[index];
        let family = &crate::telemetry::metrics().function_version;
        for old in control.tracks[index].shown.drain(..) {
            family.remove(&old);
        }
        let Some(traffic) = function.traffic() else {
            return;
        };
        let canary_share = traffic.canary.as_ref().map_or(0, |c| c.percent);
        let mut shown = vec![(
            VersionLabels {
                function: function.id.to_string(),
                digest: traffic.stable.short_digest().to_owned(),
                track: "stable".into(),
            },
            MAX_PERCENT - canary_share,
        )];
        if let Some(canary) = &traffic.canary {
            shown.push((
                VersionLabels {
                    function: function.id.to_string(),
                    digest: canary.version.short_digest().to_owned(),
                    track: "canary".into(),
                },
                canary.percent,
            ));
        }
        for (labels, percent) in shown {
            family.get_or_create(&labels).set(i64::from(percent));
            control.tracks[index].shown.push(labels);
        }
    }
}

/// Counts a change (or a refusal) of `function` by its kind.
pub(super) fn count(function: &str, kind: &str) {
    crate::telemetry::metrics()
        .deployments
        .get_or_create(&crate::telemetry::outcome(function, kind))
        .inc();
}
