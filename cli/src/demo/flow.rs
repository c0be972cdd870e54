//! The orchestrator's part of `sextant up --demo`: the flow behind the
//! estate, built through the orchestrator's own REST API (never its
//! database), so that every page of the flow has something to show.
//!
//! Two dry-run agents run in this process (`Runner::DryRun`, no Docker):
//! `demo-agent-1` serves dev, qa and stage, `demo-agent-2` prod, and the
//! latter fails any deploy of `payments/gateway` 3.3.0 (its `fail_image`).
//! Environments dev → qa → stage → prod (stage needs one approval, prod
//! two), the estate's six workloads as components, its targets, and five
//! releases of its versions (`super::revision` digests), moved as the
//! estate's story has them:
//! - `payments-2` all the way to prod, approved by alice and bob: every
//!   job finished;
//! - `payments-3` to stage, then into prod, where gateway 3.3.0 never
//!   becomes healthy: the job is rolled back to `payments-2`;
//! - `shop-3` to stage, then requested into prod by carol and approved by
//!   alice: awaiting its second approval, which anyone but carol (the
//!   default viewer `local` too) may give;
//! - `search-2` to stage, then into prod one target at a time with an
//!   hour's pause between them: a job running (prod-eu done, prod-us
//!   waiting) for an hour after the demo starts;
//! - `search-3` to stage.
//!
//! Every digest it deploys is the one the estate's hosts report for that
//! environment, so the hub's picture stays true; only prod-eu's indexer
//! and the desired state's origin (a real promotion) are the flow's. Run
//! again on the same data directory, it finds its releases and only
//! starts the agents (the running job has ended by then: a restarted
//! orchestrator resumes it after its pause). Approvals by several people need the API's open
//! mode: with tokens the flow is skipped, with a warning.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use sextant_agent::channel::{self, ChannelConfig, Identity, Runner};
use tokio_util::sync::CancellationToken;

use super::{TARGETS, WORKLOADS, revision};

/// Where the flow is built.
#[derive(Debug, Clone)]
pub struct FlowConfig {
    /// The orchestrator's API, `http://host:port`.
    pub api: String,
    /// The orchestrator's agent endpoint, `http://host:port`.
    pub agents: String,
    /// The agents' identities go under `DATA_DIR/demo-agents/`.
    pub data_dir: PathBuf,
}

/// The dry-run agents: (name, environments served).
const AGENTS: [(&str, &[&str]); 2] = [
    ("demo-agent-1", &["dev", "qa", "stage"]),
    ("demo-agent-2", &["prod"]),
];

/// The release that fails in prod, and its failing workload.
const FAILING: (&str, &str) = ("gateway", "3.3.0");

/// How long the running job waits between its two prod targets.
const PAUSE: &str = "1h";

/// How long one promotion may take to settle.
const SETTLE: Duration = Duration::from_secs(120);

/// Builds the flow, then leaves the agents running until `cancel`. A
/// failure is logged as a warning: the hub's estate and `sextant up` go on.
pub async fn run(config: FlowConfig, cancel: CancellationToken) {
    let api = match Api::new(&config.api) {
        Ok(api) => api,
        Err(error) => {
            tracing::warn!(error = format!("{error:#}"), "Cannot build the demo flow");
            return;
        }
    };
    match build(&api, &config, &cancel).await {
        Ok(Some(summary)) => crate::banner(&summary),
        Ok(None) => {}
        Err(error) => tracing::warn!(
            error = format!("{error:#}"),
            orchestrator = %config.api,
            "The demo flow is incomplete; the hub's demo estate is unaffected"
        ),
    }
}

/// The flow; `None` when it was built by an earlier run.
async fn build(
    api: &Api,
    config: &FlowConfig,
    cancel: &CancellationToken,
) -> anyhow::Result<Option<String>> {
    let (status, _) = api.call("GET", "/api/v1/whoami", "local", None).await?;
    if status == 401 {
        tracing::warn!(
            "The demo flow needs the orchestrator's open mode (several people approve); it has \
             tokens, so the demo shows the hub's estate only"
        );
        return Ok(None);
    }
    let fail = revision(FAILING.0, FAILING.1);
    for (name, _) in AGENTS {
        let fail_image = (name == "demo-agent-2").then(|| fail.clone());
        start_agent(api, config, name, fail_image, cancel).await?;
    }
    api.wait_agents_online().await?;
    let releases = api
        .ok("GET", "/api/v1/releases?limit=1", "local", None)
        .await?;
    if releases.as_array().is_some_and(|r| !r.is_empty()) {
        tracing::info!("The demo flow was built by an earlier run; its agents are back");
        return Ok(None);
    }
    api.ok("POST", "/api/v1/apply", "local", Some(configuration()))
        .await?;
    for (name, app, version) in RELEASES {
        api.ok(
            "POST",
            "/api/v1/releases",
            "carol",
            Some(release(name, app, version)),
        )
        .await
        .with_context(|| format!("release {name}"))?;
    }
    const BELOW_PROD: [&str; 3] = ["dev", "qa", "stage"];
    let payments = async {
        api.through("payments-2", &["dev", "qa", "stage", "prod"])
            .await?;
        api.through("payments-3", &BELOW_PROD).await?;
        let p = api.promote("payments-3", "prod", None, 2).await?;
        api.settled(&p, "rolled_back").await
    };
    let shop = async {
        api.through("shop-3", &BELOW_PROD).await?;
        api.promote("shop-3", "prod", None, 1).await
    };
    let search = async {
        api.through("search-2", &BELOW_PROD).await?;
        api.through("search-3", &BELOW_PROD).await
    };
    let (payments, shop, search) = tokio::join!(payments, shop, search);
    payments.context("payments-3 into prod (rolled back)")?;
    let waiting = shop.context("shop-3 into prod (awaiting approval)")?;
    search.context("search through stage")?;
    // Last, so that it is the job running now.
    let strategy = json!({"type": "rolling", "batch_size": 1, "pause": PAUSE});
    let running = api
        .promote("search-2", "prod", Some(strategy), 2)
        .await
        .context("search-2 into prod (running)")?;
    let job = api.running_job(&running).await?;
    Ok(Some(format!(
        "Demo flow on the orchestrator: {} releases, 2 dry-run agents; shop-3 awaits a second \
         approval into prod ({}/promotions/{}), search-2 is rolling into prod for the next {PAUSE} \
         ({}/jobs/{job}), payments-3 was rolled back in prod\n",
        RELEASES.len(),
        config.api,
        str_of(&waiting, "id"),
        config.api,
    )))
}

/// (release, application, index of its versions in `WORKLOADS`).
const RELEASES: [(&str, &str, usize); 5] = [
    ("payments-2", "payments", 1),
    ("search-2", "search", 1),
    ("payments-3", "payments", 2),
    ("shop-3", "shop", 2),
    ("search-3", "search", 2),
];

/// The image repository of a workload.
fn image(app: &str, workload: &str) -> String {
    format!("registry.demo.sextant.dev/{app}/{workload}")
}

/// The environments, components and targets, for `POST /api/v1/apply`.
fn configuration() -> Value {
    let environments = super::ENVIRONMENTS.map(|name| match name {
        "stage" => json!({"name": name, "required_approvals": 1}),
        "prod" => json!({"name": name, "production": true, "required_approvals": 2}),
        _ => json!({"name": name}),
    });
    let components: Vec<Value> = WORKLOADS
        .iter()
        .map(|(app, workload, _)| {
            json!({"name": workload, "image": image(app, workload), "application": app})
        })
        .collect();
    let targets: Vec<Value> = TARGETS
        .iter()
        .map(|(environment, target, _)| {
            let agent = AGENTS
                .iter()
                .find(|(_, envs)| envs.contains(environment))
                .map_or("demo-agent-1", |(name, _)| name);
            json!({"name": target, "environment": environment,
                "agent": {"selector": {"demo": agent}}})
        })
        .collect();
    json!({"environments": environments, "components": components, "targets": targets})
}

/// A release of an application's workloads at their `version`th version.
fn release(name: &str, app: &str, version: usize) -> Value {
    let components: Vec<Value> = WORKLOADS
        .iter()
        .filter(|(a, _, _)| *a == app)
        .map(|(app, workload, versions)| {
            json!({"component": workload,
                "image": format!("{}@{}", image(app, workload), revision(workload, versions[version]))})
        })
        .collect();
    json!({"name": name, "components": components})
}

/// Starts a dry-run agent in this process, registering it first when it
/// has no identity yet.
async fn start_agent(
    api: &Api,
    config: &FlowConfig,
    name: &str,
    fail_image: Option<String>,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    let data_dir = config.data_dir.join("demo-agents").join(name);
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    let registration_token = if has_identity(&data_dir) {
        None
    } else {
        let token = api
            .ok("POST", "/api/v1/agents/tokens", "local", Some(json!({})))
            .await?;
        Some(sextant_kit::Secret::new(str_of(&token, "token")))
    };
    let channel = ChannelConfig {
        endpoints: vec![config.agents.clone()],
        registration_token,
        name: name.to_owned(),
        labels: [("demo".to_owned(), name.to_owned())].into(),
        data_dir,
        max_backoff: Duration::from_secs(5),
        tls: Default::default(),
    };
    let runner = Runner::DryRun {
        delay: Duration::from_millis(300),
        executed: Arc::default(),
        fail_image,
    };
    let name = name.to_owned();
    let cancel = cancel.clone();
    tokio::spawn(async move {
        if let Err(error) = channel::run(channel, runner, cancel).await {
            tracing::warn!(agent = %name, error = %error, "A demo agent stopped");
        }
    });
    Ok(())
}

fn has_identity(data_dir: &Path) -> bool {
    matches!(Identity::load(data_dir), Ok(Some(_)))
}

fn str_of(value: &Value, key: &str) -> String {
    value[key].as_str().unwrap_or_default().to_owned()
}

/// The orchestrator's API in open mode: each call as `X-Sextant-Actor`.
struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    fn new(base: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .context("cannot build an HTTP client")?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
        })
    }

    /// The status and JSON body of one request.
    async fn call(
        &self,
        method: &str,
        path: &str,
        actor: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let url = format!("{}{path}", self.base);
        let mut request = match method {
            "GET" => self.http.get(&url),
            _ => self.http.post(&url),
        };
        request = request.header("x-sextant-actor", actor);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{method} {url}"))?;
        let status = response.status().as_u16();
        Ok((status, response.json().await.unwrap_or(Value::Null)))
    }

    /// The JSON body of a request that must succeed.
    async fn ok(
        &self,
        method: &str,
        path: &str,
        actor: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let (status, body) = self.call(method, path, actor, body).await?;
        if !(200..300).contains(&status) {
            let why = body["error"]["message"].as_str().unwrap_or("no message");
            bail!("{method} {path}: {status}: {why}");
        }
        Ok(body)
    }

    async fn wait_agents_online(&self) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let agents = self.ok("GET", "/api/v1/agents", "local", None).await?;
            let online = AGENTS.iter().all(|(name, _)| {
                agents.as_array().into_iter().flatten().any(|a| {
                    a["name"] == *name && a["status"] == "online" && a["revoked_at"].is_null()
                })
            });
            if online {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!("the demo agents did not come online: {agents}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Requests a promotion as carol and approves it as alice, then bob,
    /// until `approvals` are given; answers the promotion.
    async fn promote(
        &self,
        release: &str,
        environment: &str,
        strategy: Option<Value>,
        approvals: usize,
    ) -> anyhow::Result<Value> {
        let mut request = json!({"release": release, "environment": environment,
            "reason": "sextant up --demo"});
        if let Some(strategy) = strategy {
            request["strategy"] = strategy;
        }
        let mut p = self
            .ok("POST", "/api/v1/promotions", "carol", Some(request))
            .await?;
        let id = str_of(&p, "id");
        for approver in ["alice", "bob"].into_iter().take(approvals) {
            if p["state"] != "awaiting_approval" {
                break;
            }
            let comment = json!({"comment": "looks good"});
            p = self
                .ok(
                    "POST",
                    &format!("/api/v1/promotions/{id}/approve"),
                    approver,
                    Some(comment),
                )
                .await?;
        }
        Ok(p)
    }

    /// Promotes `release` through `environments` in turn, each deployed
    /// before the next.
    async fn through(&self, release: &str, environments: &[&str]) -> anyhow::Result<()> {
        for environment in environments {
            let p = self.promote(release, environment, None, 2).await?;
            self.settled(&p, "deployed")
                .await
                .with_context(|| format!("{release} into {environment}"))?;
        }
        Ok(())
    }

    /// Waits until promotion `p` ends, which must be in `want`.
    async fn settled(&self, p: &Value, want: &str) -> anyhow::Result<()> {
        let id = str_of(p, "id");
        let deadline = tokio::time::Instant::now() + SETTLE;
        loop {
            let p = self
                .ok("GET", &format!("/api/v1/promotions/{id}"), "local", None)
                .await?;
            let state = p["state"].as_str().unwrap_or_default();
            if state == want {
                return Ok(());
            }
            if ["deployed", "failed", "rolled_back", "rejected", "cancelled"].contains(&state) {
                bail!("promotion {id} ended {state}, not {want}");
            }
            if tokio::time::Instant::now() > deadline {
                bail!("promotion {id} is still {state} after {SETTLE:?}");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Waits until promotion `p`'s job runs with its first target done;
    /// answers the job's id.
    async fn running_job(&self, p: &Value) -> anyhow::Result<String> {
        let id = str_of(p, "id");
        let deadline = tokio::time::Instant::now() + SETTLE;
        loop {
            let p = self
                .ok("GET", &format!("/api/v1/promotions/{id}"), "local", None)
                .await?;
            if let Some(job) = p["job_id"].as_str() {
                let j = self
                    .ok("GET", &format!("/api/v1/jobs/{job}"), "local", None)
                    .await?;
                let done = j["tasks"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|t| t["state"] == "succeeded");
                if j["state"] == "running" && done {
                    return Ok(job.to_owned());
                }
                if j["finished_at"].is_string() {
                    bail!("job {job} ended {} before it paused", j["state"]);
                }
            }
            if tokio::time::Instant::now() > deadline {
                bail!("promotion {id} has no running job after {SETTLE:?}: {p}");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flow_deploys_what_the_estate_reports() {
        let config = configuration();
        assert_eq!(config["environments"].as_array().map(Vec::len), Some(4));
        assert_eq!(
            config["targets"].as_array().map(Vec::len),
            Some(TARGETS.len())
        );
        // Prod's targets are the failing agent's.
        for t in config["targets"].as_array().into_iter().flatten() {
            let prod = t["environment"] == "prod";
            assert_eq!(
                t["agent"]["selector"]["demo"] == "demo-agent-2",
                prod,
                "{t}"
            );
        }
        let r = release("payments-3", "payments", 2);
        let images: Vec<&str> = r["components"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["image"].as_str())
            .collect();
        assert_eq!(images.len(), 2, "{r}");
        let fail = revision(FAILING.0, FAILING.1);
        assert_eq!(images.iter().filter(|i| i.contains(&fail)).count(), 1);
        let r = release("payments-2", "payments", 1);
        assert!(!r.to_string().contains(&fail), "{r}");
    }
}
