//! Exponential backoff with full jitter.

use std::time::Duration;

use rand::Rng;

/// Backoff settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffConfig {
    /// The ceiling of the first delay.
    pub initial: Duration,
    /// The ceiling never grows past this.
    pub max: Duration,
    /// Growth of the ceiling per failed attempt.
    pub multiplier: f64,
    /// The most a server-given delay (`Retry-After`, `RetryInfo`) is
    /// honoured for; longer ones are cut to it.
    pub max_server_delay: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
            multiplier: 2.0,
            max_server_delay: Duration::from_secs(300),
        }
    }
}

/// The delays of one run of failures.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    config: BackoffConfig,
    ceiling: Duration,
}

impl Backoff {
    pub fn new(config: BackoffConfig) -> Self {
        Self {
            config,
            ceiling: config.initial,
        }
    }

    pub fn reset(&mut self) {
        self.ceiling = self.config.initial;
    }

    /// The next delay: the server's when it gave one (capped), else a
    /// uniformly random delay up to the current ceiling ("full jitter").
    /// The ceiling grows either way.
    pub fn next(&mut self, server: Option<Duration>) -> Duration {
        let ceiling = self.ceiling;
        self.ceiling = ceiling
            .mul_f64(self.config.multiplier.max(1.0))
            .min(self.config.max);
        match server {
            Some(d) => d.min(self.config.max_server_delay),
            None => {
                let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
                Duration::from_nanos(rand::rng().random_range(0..=nanos))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_stay_under_a_growing_capped_ceiling() {
        let mut b = Backoff::new(BackoffConfig {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(400),
            multiplier: 2.0,
            max_server_delay: Duration::from_secs(1),
        });
        let ceilings = [100, 200, 400, 400, 400];
        for c in ceilings {
            assert!(b.next(None) <= Duration::from_millis(c));
        }
        assert_eq!(b.next(Some(Duration::from_secs(9))), Duration::from_secs(1));
        assert_eq!(
            b.next(Some(Duration::from_millis(7))),
            Duration::from_millis(7)
        );
        b.reset();
        assert!(b.next(None) <= Duration::from_millis(100));
    }
}
