//! A/B results: a split's variants side by side, each challenger against the first
//! variant with a two-proportion z-test, and a verdict only when the difference is significant.

use std::collections::BTreeMap;

use serde::Serialize;

use super::Funnel;
use crate::stats::EmailKey;

/// Below this p-value a difference is called.
pub const SIGNIFICANCE: f64 = 0.05;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VariantResult {
    pub variant: String,
    pub sent: i64,
    pub delivered: i64,
    pub clicked: i64,
    pub converted: i64,
    pub click_rate: Option<f64>,
    pub conversion_rate: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ProportionTest {
    pub z: f64,
    /// Two-sided.
    pub p_value: f64,
}

/// Each variant needs this many expected successes and failures (at the pooled rate) for the
/// normal approximation behind the z-test to hold.
pub const MIN_EXPECTED: f64 = 5.0;

/// Is `x2 / n2` different from `x1 / n1`? Pooled two-proportion z-test; `None` when there is
/// too little data for it (fewer than 5 expected successes or failures in a variant).
pub fn two_proportion_test(x1: i64, n1: i64, x2: i64, n2: i64) -> Option<ProportionTest> {
    if n1 <= 0 || n2 <= 0 {
        return None;
    }
    let (x1, n1, x2, n2) = (x1 as f64, n1 as f64, x2 as f64, n2 as f64);
    let pooled = (x1 + x2) / (n1 + n2);
    if [n1 * pooled, n2 * pooled, n1 * (1.0 - pooled), n2 * (1.0 - pooled)].iter().any(|expected| *expected < MIN_EXPECTED) {
        return None;
    }
    let standard_error = (pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2)).sqrt();
    if standard_error <= 0.0 || !standard_error.is_finite() {
        return None;
    }
    let z = (x2 / n2 - x1 / n1) / standard_error;
    Some(ProportionTest { z, p_value: libm::erfc(z.abs() / std::f64::consts::SQRT_2) })
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub metric: &'static str,
    pub control: String,
    pub challenger: String,
    pub test: Option<ProportionTest>,
    /// Said only when p < 0.05.
    pub verdict: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AbTest {
    pub flow: String,
    pub variants: Vec<VariantResult>,
    pub comparisons: Vec<Comparison>,
}

fn compare(metric: &'static str, control: &VariantResult, challenger: &VariantResult, pick: fn(&VariantResult) -> (i64, i64)) -> Comparison {
    let (x1, n1) = pick(control);
    let (x2, n2) = pick(challenger);
    let test = two_proportion_test(x1, n1, x2, n2);
    let verdict = test.filter(|t| t.p_value < SIGNIFICANCE).map(|t| {
        let (winner, loser, rw, rl) = if t.z > 0.0 { (challenger, control, x2, x1) } else { (control, challenger, x1, x2) };
        let (nw, nl) = if t.z > 0.0 { (n2, n1) } else { (n1, n2) };
        format!(
            "{} beats {} on {metric} ({:.1}% vs {:.1}%, p = {:.4})",
            winner.variant,
            loser.variant,
            100.0 * rw as f64 / nw as f64,
            100.0 * rl as f64 / nl as f64,
            t.p_value
        )
    });
    Comparison { metric, control: control.variant.clone(), challenger: challenger.variant.clone(), test, verdict }
}

/// Every flow whose sends carry variants; variants in name order, the first is the control.
pub(super) fn ab_tests(by_key: &BTreeMap<&EmailKey, Funnel>) -> Vec<AbTest> {
    let mut flows: BTreeMap<&str, BTreeMap<&str, Funnel>> = BTreeMap::new();
    for (key, funnel) in by_key {
        if let Some(variant) = &key.variant {
            flows.entry(&key.flow).or_default().entry(variant).or_default().merge(funnel);
        }
    }
    flows
        .into_iter()
        .map(|(flow, variants)| {
            let variants: Vec<VariantResult> = variants
                .into_iter()
                .map(|(name, f)| VariantResult {
                    variant: name.to_owned(),
                    sent: f.sent,
                    delivered: f.delivered,
                    clicked: f.clicked,
                    converted: f.converted,
                    click_rate: f.click_rate(),
                    conversion_rate: f.conversion_rate(),
                })
                .collect();
            let mut comparisons = Vec::new();
            if let Some((control, challengers)) = variants.split_first() {
                for challenger in challengers {
                    comparisons.push(compare("click rate", control, challenger, |v| (v.clicked, if v.delivered > 0 { v.delivered } else { v.sent })));
                    comparisons.push(compare("conversion rate", control, challenger, |v| (v.converted, v.sent)));
                }
            }
            AbTest { flow: flow.to_owned(), variants, comparisons }
        })
        .collect()
}
