//! Argo CD Notifications as it renders Sextant's shipped webhook template
//! (deploy/argocd/argocd-notifications-cm.yaml) over an Application.

use serde_json::Value;

use crate::workspace_root;

/// The body of the `sextant-app` template Sextant ships.
pub fn shipped_template() -> String {
    let path = workspace_root().join("deploy/argocd/argocd-notifications-cm.yaml");
    let cm: Value = serde_norway::from_str(&std::fs::read_to_string(&path).expect("config map"))
        .expect("config map YAML");
    let template: Value = serde_norway::from_str(
        cm["data"]["template.sextant-app"]
            .as_str()
            .expect("template.sextant-app"),
    )
    .expect("template YAML");
    template["webhook"]["sextant"]["body"]
        .as_str()
        .expect("webhook body")
        .to_owned()
}

/// A real Application with its status (argoproj/argo-cd
/// `controller/testdata/diff-cache.yaml`; receiver/tests/fixtures/
/// reconcilers/README.md), as JSON.
pub fn application() -> Value {
    let path = workspace_root()
        .join("receiver/tests/fixtures/reconcilers/argocd-application-velero-test.yaml");
    serde_norway::from_str(&std::fs::read_to_string(&path).expect("fixture")).expect("YAML")
}

/// Renders a template the way Argo CD's Go templates do for the subset the
/// shipped one uses: `{{toJson .path}}` (sprig: `null` for a missing value)
/// and `{{if .path}} … {{end}}` (false for a missing, null, empty or false
/// value). Any other action panics, so the template cannot grow past what
/// this renders.
pub fn render(template: &str, data: &Value) -> String {
    fn lookup<'a>(data: &'a Value, path: &str) -> Option<&'a Value> {
        path.trim_start_matches('.')
            .split('.')
            .try_fold(data, |v, key| v.get(key))
    }
    fn truthy(v: Option<&Value>) -> bool {
        match v {
            None | Some(Value::Null) | Some(Value::Bool(false)) => false,
            Some(Value::String(s)) => !s.is_empty(),
            Some(Value::Array(a)) => !a.is_empty(),
            Some(Value::Object(o)) => !o.is_empty(),
            Some(_) => true,
        }
    }
    let mut out = String::new();
    let mut active = vec![true];
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let on = *active.last().expect("balanced");
        if on {
            out.push_str(&rest[..start]);
        }
        let end = rest[start..].find("}}").expect("closed action") + start;
        let words: Vec<&str> = rest[start + 2..end].split_whitespace().collect();
        match words.as_slice() {
            ["toJson", path] if on => {
                out.push_str(
                    &lookup(data, path)
                        .cloned()
                        .unwrap_or(Value::Null)
                        .to_string(),
                );
            }
            ["toJson", _] => {}
            ["if", path] => active.push(on && truthy(lookup(data, path))),
            ["end"] => {
                active.pop();
            }
            other => panic!("the template uses {other:?}, which this renderer lacks"),
        }
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    out
}
