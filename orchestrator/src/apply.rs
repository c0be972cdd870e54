//! Declarative configuration: environments, targets and components in one
//! YAML file, applied idempotently (`sextant apply -f FILE` or
//! `POST /api/v1/apply`). The schema is documented in docs/orchestrator.md.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::{ComponentSpec, EnvironmentSpec, TargetSpec};
use crate::service::{Orchestrator, OrchestratorError, Result};
use crate::store::Change;

/// The file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Document {
    #[serde(default)]
    pub environments: Vec<EnvironmentSpec>,
    #[serde(default)]
    pub components: Vec<ComponentSpec>,
    #[serde(default)]
    pub targets: Vec<TargetSpec>,
}

/// What applying did to one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Applied {
    /// `environment`, `component` or `target`.
    pub kind: String,
    pub name: String,
    pub change: Change,
}

/// A document that is not YAML of the expected shape.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {source}")]
pub struct ParseError {
    #[source]
    pub source: serde_norway::Error,
}

/// A document that parses but would write something wrong: each problem a
/// sentence for the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", problems.join("; "))]
pub struct Invalid {
    pub problems: Vec<String>,
}

/// What is wrong with an agent target that a task would only find out.
#[derive(Debug, thiserror::Error)]
enum AgentTargetProblem {
    #[error("target {target:?}: agent names both an id and a selector; pick one")]
    IdAndSelector { target: String },
    #[error("target {target:?}: agent needs an id or a non-empty selector")]
    NoAgent { target: String },
    #[error(
        "target {target:?}: agent targets take deploy template docker (the default) or compose; \
         custom commands run over SSH"
    )]
    Custom { target: String },
    /// Container settings the agent would refuse (a reserved label, a
    /// health probe it cannot run …).
    #[error("target {target:?}: agent.container: {source}")]
    Container {
        target: String,
        #[source]
        source: sextant_protocol::deploy::SpecError,
    },
}

impl Document {
    /// Parses YAML (JSON is YAML too), with the line of the first error.
    pub fn parse(text: &str) -> std::result::Result<Self, ParseError> {
        serde_norway::from_str(text).map_err(|source| ParseError { source })
    }

    /// Checks references and shapes before anything is written.
    pub fn validate(&self, known_environments: &[String]) -> std::result::Result<(), Invalid> {
        let mut problems = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for e in &self.environments {
            if e.name.trim().is_empty() {
                problems.push("an environment has an empty name".to_owned());
            }
            if !seen.insert(("environment", e.name.as_str())) {
                problems.push(format!("environment {:?} is listed twice", e.name));
            }
            if e.required_approvals as usize > e.approvers.len() && !e.approvers.is_empty() {
                problems.push(format!(
                    "environment {:?} requires {} approvals but lists {} approvers",
                    e.name,
                    e.required_approvals,
                    e.approvers.len()
                ));
            }
            if let Err(why) = crate::promotion::gates::freeze_window_open(
                &e.freeze_windows,
                time::OffsetDateTime::now_utc(),
            ) {
                problems.push(format!("environment {:?}: {why}", e.name));
            }
        }
        for c in &self.components {
            if !seen.insert(("component", c.name.as_str())) {
                problems.push(format!("component {:?} is listed twice", c.name));
            }
            if c.image.contains('@') {
                problems.push(format!(
                    "component {:?}: image is a repository, without a digest",
                    c.name
                ));
            }
        }
        for t in &self.targets {
            if !seen.insert(("target", t.name.as_str())) {
                problems.push(format!("target {:?} is listed twice", t.name));
            }
            match t.connection() {
                Err(why) => problems.push(why.to_string()),
                Ok(crate::domain::Connection::Agent(agent)) => {
                    if let Err(why) = agent_target_problem(t, agent) {
                        problems.push(why.to_string());
                    }
                }
                Ok(_) => {}
            }
            if !self.environments.iter().any(|e| e.name == t.environment)
                && !known_environments.contains(&t.environment)
            {
                problems.push(format!(
                    "target {:?} names unknown environment {:?}",
                    t.name, t.environment
                ));
            }
            if let Err(why) = crate::domain::health::problem(t) {
                problems.push(why.to_string());
            }
            for key in t.vars.keys() {
                let ok = key
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !ok {
                    problems.push(format!(
                        "target {:?}: variable {key:?} is not a shell identifier",
                        t.name
                    ));
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Invalid { problems })
        }
    }
}

impl Orchestrator {
    /// Applies a document: validates it all, then creates or updates each
    /// object. Objects not in the document are left alone.
    pub async fn apply(&self, tenant: &str, doc: &Document) -> Result<Vec<Applied>> {
        let existing = self.store.environments(tenant).await?;
        let known: Vec<String> = existing.iter().map(|e| e.name.clone()).collect();
        doc.validate(&known)
            .map_err(|e| OrchestratorError::Invalid(e.to_string()))?;
        let mut out = Vec::new();
        // Without `order`, an environment's place is its position in the file.
        for (i, e) in doc.environments.iter().enumerate() {
            let position = e.order.unwrap_or(i as i64 + 1);
            let change = self.store.put_environment(tenant, e, position).await?;
            out.push(Applied {
                kind: "environment".into(),
                name: e.name.clone(),
                change,
            });
        }
        for c in &doc.components {
            let change = self.store.put_component(tenant, c).await?;
            out.push(Applied {
                kind: "component".into(),
                name: c.name.clone(),
                change,
            });
        }
        for t in &doc.targets {
            let change = self.store.put_target(tenant, t).await?;
            out.push(Applied {
                kind: "target".into(),
                name: t.name.clone(),
                change,
            });
        }
        Ok(out)
    }
}

/// What is wrong with an agent target that a task would only find out.
fn agent_target_problem(
    t: &crate::domain::TargetSpec,
    agent: &crate::domain::AgentConnection,
) -> std::result::Result<(), AgentTargetProblem> {
    use crate::domain::DeployTemplate;
    let target = || t.name.clone();
    match (&agent.id, agent.selector.is_empty()) {
        (Some(_), false) => {
            return Err(AgentTargetProblem::IdAndSelector { target: target() });
        }
        (None, true) => {
            return Err(AgentTargetProblem::NoAgent { target: target() });
        }
        _ => {}
    }
    if matches!(t.deploy, Some(DeployTemplate::Custom { .. })) {
        return Err(AgentTargetProblem::Custom { target: target() });
    }
    if let Some(template) = &agent.container {
        template
            .container
            .validate()
            .map_err(|source| AgentTargetProblem::Container {
                target: target(),
                source,
            })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{Document, Invalid};

    fn validate(
        agent: serde_json::Value,
        deploy: Option<serde_json::Value>,
    ) -> Result<(), Invalid> {
        let mut target = serde_json::json!({"name": "t", "environment": "prod", "agent": agent});
        if let Some(d) = deploy {
            target["deploy"] = d;
        }
        let doc: Document = serde_json::from_value(serde_json::json!({
            "environments": [{"name": "prod"}],
            "targets": [target],
        }))
        .expect("a document");
        doc.validate(&[])
    }

    #[test]
    fn an_agent_target_names_one_agent_and_a_template_agents_run() {
        assert_eq!(validate(serde_json::json!({"id": "a1"}), None), Ok(()));
        assert_eq!(
            validate(serde_json::json!({"selector": {"zone": "a"}}), None),
            Ok(())
        );
        let none = validate(serde_json::json!({}), None)
            .unwrap_err()
            .to_string();
        assert!(
            none.contains("needs an id or a non-empty selector"),
            "{none}"
        );
        let both = validate(
            serde_json::json!({"id": "a1", "selector": {"zone": "a"}}),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(both.contains("both an id and a selector"), "{both}");
        let custom = validate(
            serde_json::json!({"id": "a1"}),
            Some(serde_json::json!({"template": "custom", "command": "true"})),
        )
        .unwrap_err()
        .to_string();
        assert!(custom.contains("custom commands run over SSH"), "{custom}");
    }

    /// The container template is checked as the agent would check it,
    /// naming the target.
    #[test]
    fn an_agent_target_s_container_settings_are_checked_at_apply() {
        for (container, word) in [
            (
                serde_json::json!({"labels": {"sextant.task": "x"}}),
                "sextant.task",
            ),
            (
                serde_json::json!({"health": {"check": "http", "url": "https://h/"}}),
                "http://",
            ),
            (
                serde_json::json!({"health": {"check": "command", "argv": []}}),
                "command",
            ),
        ] {
            let err = validate(
                serde_json::json!({"id": "a1", "container": container}),
                None,
            )
            .unwrap_err()
            .to_string();
            assert!(err.contains("\"t\"") && err.contains(word), "{err}");
        }
        let shell =
            serde_json::json!({"health": {"check": "command", "command": "test -f /ready"}});
        assert_eq!(
            validate(serde_json::json!({"id": "a1", "container": shell}), None),
            Ok(())
        );
    }
}
