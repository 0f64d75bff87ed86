//! The `pool-membership` load-balancing policy: set on the pool's Envoy cluster
//! (`envoy.load_balancing_policies.dynamic_modules`), it lets the picker follow the cluster's
//! hosts — EDS from Envoy Gateway, Istio or any xDS server, STRICT_DNS, static — so scaling the
//! model servers needs no re-render and no restart.
//!
//! - **Membership.** Each worker's balancer reads the cluster's hosts when it is created and
//!   after every host-set update, and reports the usable ones (every priority; not `Unhealthy`,
//!   an EDS `UNHEALTHY` host read 0 = Unhealthy on 1.40.0; failed health checks map there too) to [`crate::hosts`]. The
//!   scraper picks the list up on its next tick, scrapes the newcomers and publishes a snapshot
//!   without the hosts that left.
//! - **Choosing.** The picker's filter names the endpoint through Envoy's upstream override host,
//!   which Envoy honours before any balancer runs. This balancer only sees requests without one:
//!   FailOpen forwards, a picked host that left the cluster between two snapshots, and retries
//!   once the destination list is used up. It answers round robin over the healthy hosts of the
//!   first priority that has any, passing over hosts the retry predicates reject (the host that
//!   just failed), so those requests still land on a live server.

use core::cell::Cell;

use crate::abi::{self, EnvoyBuffer, Ptr};
use crate::hosts;

/// The policy name to put in `lb_policy_name`.
pub const POLICY_NAME: &str = "pool-membership";

/// Checks the policy name and its configuration (`lb_policy_config`: empty, or a JSON object
/// with no fields yet).
///
/// # Errors
/// A message naming what is wrong; Envoy then rejects the cluster.
pub fn check_config(name: &str, config: &str) -> Result<(), String> {
    if name != POLICY_NAME {
        return Err(format!(
            "unknown load-balancing policy '{name}' (this module has '{POLICY_NAME}')"
        ));
    }
    let config = config.trim();
    if config.is_empty() {
        return Ok(());
    }
    match serde_json::from_str::<serde_json::Value>(config) {
        Ok(serde_json::Value::Object(m)) if m.is_empty() => Ok(()),
        Ok(serde_json::Value::Object(m)) => Err(format!(
            "unknown field '{}' (the policy takes no parameters)",
            m.keys().next().map_or("", String::as_str)
        )),
        Ok(_) => Err("the configuration must be a JSON object".into()),
        Err(e) => Err(format!("invalid JSON: {e}")),
    }
}

/// One worker's balancer for one cluster.
pub struct Balancer {
    cluster: String,
    next: Cell<usize>,
}

fn text(b: EnvoyBuffer) -> String {
    // SAFETY: a buffer Envoy filled during the current hook.
    String::from_utf8_lossy(unsafe { abi::bytes(b) }).into_owned()
}

impl Balancer {
    /// The balancer for the cluster behind `lb`. Its current hosts are reported only when there
    /// are some: a worker's balancer is created over an empty host set that the membership hook
    /// fills right after, and reporting that empty set would empty the pool for a moment.
    pub(crate) fn new(lb: Ptr) -> Balancer {
        let mut name = EnvoyBuffer::EMPTY;
        // SAFETY: Envoy's balancer pointer of this hook; the buffer is read before returning.
        unsafe { abi::envoy_dynamic_module_callback_lb_get_cluster_name(lb, &mut name) };
        let b = Balancer {
            cluster: text(name),
            next: Cell::new(0),
        };
        b.refresh(lb, false);
        b
    }

    /// Reads every host of the cluster and reports the usable ones (an empty list only when
    /// `report_empty`: after a membership change, where it means the cluster has none left).
    pub(crate) fn refresh(&self, lb: Ptr, report_empty: bool) {
        let mut list = Vec::new();
        // SAFETY (all calls below): Envoy's balancer pointer of the current hook, with
        // priorities and indexes inside the counts Envoy just gave.
        let priorities = unsafe { abi::envoy_dynamic_module_callback_lb_get_priority_set_size(lb) };
        for p in 0..priorities {
            let p = u32::try_from(p).unwrap_or(u32::MAX);
            let n = unsafe { abi::envoy_dynamic_module_callback_lb_get_hosts_count(lb, p) };
            for i in 0..n {
                if unsafe { abi::envoy_dynamic_module_callback_lb_get_host_health(lb, p, i) }
                    == abi::HOST_UNHEALTHY
                {
                    continue;
                }
                let mut addr = EnvoyBuffer::EMPTY;
                if unsafe {
                    abi::envoy_dynamic_module_callback_lb_get_host_address(lb, p, i, &mut addr)
                } {
                    list.push(text(addr));
                }
            }
        }
        let n = list.len();
        if n == 0 && !report_empty {
            return;
        }
        if hosts::report(&self.cluster, list) {
            log::info!(
                "endpoint picker: cluster '{}' now has {n} usable hosts",
                self.cluster
            );
        }
    }

    /// Round robin over the healthy hosts of the first priority that has any, skipping hosts
    /// the request's retry predicates reject (`previous_hosts`: not the host that just failed)
    /// for up to the context's host-selection retry count: `(priority, index among its healthy
    /// hosts)`, or `None` when no host is healthy.
    pub(crate) fn choose(&self, lb: Ptr, context: Ptr) -> Option<(u32, u32)> {
        // SAFETY (all calls below): Envoy's balancer and context pointers of this hook, with
        // priorities and indexes inside the counts Envoy just gave.
        let priorities = unsafe { abi::envoy_dynamic_module_callback_lb_get_priority_set_size(lb) };
        for p in 0..priorities {
            let p = u32::try_from(p).ok()?;
            let healthy_count =
                unsafe { abi::envoy_dynamic_module_callback_lb_get_healthy_hosts_count(lb, p) };
            if healthy_count == 0 {
                continue;
            }
            let start = self.next.get();
            self.next.set(start.wrapping_add(1));
            // Envoy's healthy list, as indexes into all hosts (for the retry predicate).
            let n = unsafe { abi::envoy_dynamic_module_callback_lb_get_hosts_count(lb, p) };
            let healthy: Vec<usize> = (0..n)
                .filter(|&i| {
                    let health =
                        unsafe { abi::envoy_dynamic_module_callback_lb_get_host_health(lb, p, i) };
                    health == abi::HOST_HEALTHY
                })
                .collect();
            if context.is_null() || healthy.len() != healthy_count {
                return Some((p, u32::try_from(start % healthy_count).ok()?));
            }
            let tries = unsafe {
                abi::envoy_dynamic_module_callback_lb_context_get_host_selection_retry_count(
                    context,
                )
            } as usize
                + 1;
            let mut pick = start % healthy_count;
            for k in 0..healthy_count.min(tries) {
                pick = (start + k) % healthy_count;
                let all_index = healthy.get(pick).copied().unwrap_or(0);
                let rejected = unsafe {
                    abi::envoy_dynamic_module_callback_lb_context_should_select_another_host(
                        lb, context, p, all_index,
                    )
                };
                if !rejected {
                    break;
                }
            }
            return Some((p, u32::try_from(pick).ok()?));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_checked() {
        assert!(check_config(POLICY_NAME, "").is_ok());
        assert!(check_config(POLICY_NAME, " {} ").is_ok());
        assert!(check_config("round-robin", "")
            .unwrap_err()
            .contains("unknown load-balancing policy"));
        assert!(check_config(POLICY_NAME, r#"{"x": 1}"#)
            .unwrap_err()
            .contains("unknown field 'x'"));
        assert!(check_config(POLICY_NAME, "[1]")
            .unwrap_err()
            .contains("JSON object"));
        assert!(check_config(POLICY_NAME, "{")
            .unwrap_err()
            .contains("invalid JSON"));
    }
}
