//! Per-tenant rate limits, shared by the hub (API and OTLP ingest) and the
//! orchestrator (API): one [`TenantLimiter`] per surface, keyed by the
//! caller's tenant, so one tenant using up its share never slows another.
//!
//! The limiter is `governor`'s keyed GCRA: a tenant may send `burst`
//! requests at once, then `per_second` on average. A refused request learns
//! how long to wait ([`RateLimited::retry_after_secs`]), which the services
//! answer as `Retry-After` (HTTP 429) or a `google.rpc.RetryInfo`
//! (gRPC `RESOURCE_EXHAUSTED`), both of which OTLP clients honour.
//!
//! Unlimited is the default. Tenants come from configured tokens, so the
//! limiter's map holds a bounded set of keys and needs no pruning.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::Clock as _;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use http::HeaderValue;
use serde::{Deserialize, Serialize};

/// A per-tenant rate limit. `per_second = 0` (the default) is unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Requests per second a tenant may sustain; fractions are allowed
    /// (`0.5` is one request every two seconds). `0`: unlimited.
    pub per_second: f64,
    /// Requests a tenant may send at once before the rate applies. `0`:
    /// `per_second` rounded up, at least 1.
    pub burst: u32,
}

/// Why a [`RateLimitConfig`] cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid rate limit: per_second must be a finite number of at least 0, not {0}")]
pub struct InvalidRateLimit(pub f64);

impl RateLimitConfig {
    /// A limit of `per_second` with a burst of `burst` (0: see [`Self::burst`]).
    pub fn new(per_second: f64, burst: u32) -> Self {
        Self { per_second, burst }
    }

    /// Whether this limit lets everything through.
    pub fn is_unlimited(&self) -> bool {
        self.per_second == 0.0
    }

    /// Refuses a negative, infinite or NaN rate.
    pub fn validate(&self) -> Result<(), InvalidRateLimit> {
        if self.per_second.is_finite() && self.per_second >= 0.0 {
            Ok(())
        } else {
            Err(InvalidRateLimit(self.per_second))
        }
    }

    /// The effective burst: as configured, else the rate rounded up.
    pub fn effective_burst(&self) -> u32 {
        if self.burst > 0 {
            self.burst
        } else {
            // Saturating float-to-int cast: a huge rate gets the largest burst.
            (self.per_second.ceil() as u32).max(1)
        }
    }

    /// `5/s, burst 10`, for messages and logs.
    pub fn describe(&self) -> String {
        if self.is_unlimited() {
            "unlimited".to_owned()
        } else {
            format!("{}/s, burst {}", self.per_second, self.effective_burst())
        }
    }

    fn quota(&self) -> Result<Option<Quota>, InvalidRateLimit> {
        self.validate()?;
        if self.is_unlimited() {
            return Ok(None);
        }
        // One request is replenished every 1/rate seconds; at least 1 ns,
        // which governor needs and no real limit comes near.
        let period = Duration::from_secs_f64(1.0 / self.per_second).max(Duration::from_nanos(1));
        let burst = NonZeroU32::new(self.effective_burst()).unwrap_or(NonZeroU32::MIN);
        Ok(Quota::with_period(period).map(|q| q.allow_burst(burst)))
    }
}

/// A request refused by a [`TenantLimiter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("rate limit exceeded, retry in {} s", self.retry_after_secs())]
pub struct RateLimited {
    /// How long until the tenant's next request would be let through.
    pub wait: Duration,
}

impl RateLimited {
    /// The wait in whole seconds, rounded up and at least 1, as
    /// `Retry-After` takes it: a client that waits this long succeeds.
    pub fn retry_after_secs(&self) -> u64 {
        let whole = self.wait.as_secs();
        let rounded = if self.wait.subsec_nanos() > 0 {
            whole.saturating_add(1)
        } else {
            whole
        };
        rounded.max(1)
    }

    /// The `Retry-After` header value.
    pub fn retry_after_header(&self) -> HeaderValue {
        HeaderValue::from(self.retry_after_secs())
    }

    /// The wait as a `google.rpc.RetryInfo` takes it, whole seconds too:
    /// a client that retries sooner is only refused again.
    pub fn retry_delay(&self) -> Duration {
        Duration::from_secs(self.retry_after_secs())
    }
}

/// A keyed rate limiter: one budget per tenant. Cheap to clone; clones
/// share the budgets.
#[derive(Clone)]
pub struct TenantLimiter {
    limiter: Option<Arc<DefaultKeyedRateLimiter<String>>>,
    config: RateLimitConfig,
}

impl std::fmt::Debug for TenantLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantLimiter")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Default for TenantLimiter {
    fn default() -> Self {
        Self::unlimited()
    }
}

impl TenantLimiter {
    /// A limiter for `config`; refuses an invalid rate.
    pub fn new(config: RateLimitConfig) -> Result<Self, InvalidRateLimit> {
        Ok(Self {
            limiter: config.quota()?.map(|q| Arc::new(RateLimiter::keyed(q))),
            config,
        })
    }

    /// Lets everything through.
    pub fn unlimited() -> Self {
        Self {
            limiter: None,
            config: RateLimitConfig::default(),
        }
    }

    /// The configured limit.
    pub fn config(&self) -> &RateLimitConfig {
        &self.config
    }

    /// Takes one request from `tenant`'s budget, or says how long to wait.
    pub fn check(&self, tenant: &str) -> Result<(), RateLimited> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        limiter
            .check_key(&tenant.to_owned())
            .map_err(|not_until| RateLimited {
                wait: not_until.wait_time_from(limiter.clock().now()),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_tenant_over_its_limit_leaves_another_alone() {
        // One request per 1000 s: the third within the test is refused.
        let limiter = TenantLimiter::new(RateLimitConfig::new(0.001, 2)).expect("valid");
        assert_eq!(limiter.check("acme"), Ok(()));
        assert_eq!(limiter.check("acme"), Ok(()));
        let refused = limiter.check("acme").expect_err("over the burst");
        assert!(
            (990..=1000).contains(&refused.retry_after_secs()),
            "{refused:?}"
        );
        assert_eq!(limiter.check("globex"), Ok(()));
        // Clones share the budgets.
        assert!(limiter.clone().check("acme").is_err());
    }

    #[test]
    fn unlimited_is_the_default_and_bad_rates_are_refused() {
        let limiter = TenantLimiter::new(RateLimitConfig::default()).expect("valid");
        for _ in 0..10_000 {
            assert_eq!(limiter.check("acme"), Ok(()));
        }
        for bad in [-1.0, f64::NAN, f64::INFINITY] {
            assert!(
                TenantLimiter::new(RateLimitConfig::new(bad, 1)).is_err(),
                "{bad}"
            );
        }
        // A rate above one per nanosecond is clamped, not refused.
        let fast = TenantLimiter::new(RateLimitConfig::new(1e12, 1)).expect("valid");
        assert_eq!(fast.check("acme"), Ok(()));
    }

    #[test]
    fn the_burst_defaults_to_the_rate_and_retry_after_rounds_up() {
        assert_eq!(RateLimitConfig::new(0.5, 0).effective_burst(), 1);
        assert_eq!(RateLimitConfig::new(2.5, 0).effective_burst(), 3);
        assert_eq!(RateLimitConfig::new(2.5, 7).effective_burst(), 7);
        assert_eq!(RateLimitConfig::new(5.0, 0).describe(), "5/s, burst 5");
        let wait = |ms| RateLimited {
            wait: Duration::from_millis(ms),
        };
        assert_eq!(wait(0).retry_after_secs(), 1);
        assert_eq!(wait(1).retry_after_secs(), 1);
        assert_eq!(wait(1000).retry_after_secs(), 1);
        assert_eq!(wait(1001).retry_after_secs(), 2);
        assert_eq!(wait(2500).retry_after_header(), "3");
        assert_eq!(wait(2500).retry_delay(), Duration::from_secs(3));
    }
}
