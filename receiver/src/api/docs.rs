//! The API reference page at `/api/docs`, rendered on the server from the
//! OpenAPI document: no JavaScript, no CDN, works offline. (Swagger UI's
//! crate downloads its assets at build time, which cannot work offline.)

use std::fmt::Write;

use serde_json::Value;

/// Escapes text for HTML.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// A short name for a schema: a link for a `$ref`, `[T]` for arrays, the
/// type otherwise.
fn type_name(schema: &Value) -> String {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r.rsplit('/').next().unwrap_or(r);
        return format!("<a href=\"#schema-{0}\">{0}</a>", esc(name));
    }
    if let Some(variants) = schema
        .get("oneOf")
        .or_else(|| schema.get("anyOf"))
        .and_then(Value::as_array)
    {
        let names: Vec<String> = variants.iter().map(type_name).collect();
        return names.join(" | ");
    }
    let ty = match schema.get("type") {
        Some(Value::Array(types)) => types
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" | "),
        Some(Value::String(t)) => t.clone(),
        _ => String::from("any"),
    };
    if ty.starts_with("array")
        && let Some(items) = schema.get("items")
    {
        return format!("[{}]", type_name(items));
    }
    let mut name = esc(&ty);
    if let Some(f) = schema.get("format").and_then(Value::as_str) {
        let _ = write!(name, " ({})", esc(f));
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        let values: Vec<String> = values
            .iter()
            .map(|v| esc(v.as_str().unwrap_or_default()))
            .collect();
        let _ = write!(name, ": {}", values.join(", "));
    }
    name
}

/// Renders the reference page.
pub fn render(doc: &utoipa::openapi::OpenApi) -> String {
    let doc = serde_json::to_value(doc).unwrap_or(Value::Null);
    let info = &doc["info"];
    let mut html = String::new();
    let _ = write!(
        html,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>{STYLE}</style></head><body><main>\
         <h1>{title} <small>v{version}</small></h1><p>{description}</p>\
         <p>The machine-readable document is <a href=\"/api/openapi.json\">/api/openapi.json</a>.</p>",
        title = esc(text(info, "title")),
        version = esc(text(info, "version")),
        description = esc(text(info, "description")),
    );

    html.push_str("<h2>Endpoints</h2>");
    if let Some(paths) = doc["paths"].as_object() {
        for (path, item) in paths {
            let Some(ops) = item.as_object() else {
                continue;
            };
            for (method, op) in ops {
                operation(&mut html, path, method, op);
            }
        }
    }

    html.push_str("<h2>Schemas</h2>");
    if let Some(schemas) = doc["components"]["schemas"].as_object() {
        for (name, schema) in schemas {
            schema_section(&mut html, name, schema);
        }
    }
    html.push_str("</main></body></html>");
    html
}

/// One endpoint: method, path, summary, its parameters and its responses.
fn operation(html: &mut String, path: &str, method: &str, op: &Value) {
    let _ = write!(
        html,
        "<section class=\"op\" id=\"op-{id}\"><h3><span class=\"method\">{m}</span> <code>{p}</code></h3>",
        id = esc(text(op, "operationId")),
        m = esc(&method.to_uppercase()),
        p = esc(path),
    );
    for key in ["summary", "description"] {
        let t = text(op, key);
        if !t.is_empty() && (key == "summary" || t != text(op, "summary")) {
            let _ = write!(html, "<p>{}</p>", esc(t));
        }
    }
    if let Some(params) = op["parameters"].as_array().filter(|p| !p.is_empty()) {
        parameters(html, params);
    }
    if let Some(responses) = op["responses"].as_object() {
        html.push_str("<table><tr><th>status</th><th>body</th><th>meaning</th></tr>");
        for (status, r) in responses {
            let body = r["content"]["application/json"]["schema"].clone();
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(status),
                if body.is_null() {
                    String::new()
                } else {
                    type_name(&body)
                },
                esc(text(r, "description")),
            );
        }
        html.push_str("</table>");
    }
    html.push_str("</section>");
}

/// An endpoint's parameters, as a table.
fn parameters(html: &mut String, params: &[Value]) {
    html.push_str(
        "<table><tr><th>parameter</th><th>in</th><th>type</th><th>required</th><th>description</th></tr>",
    );
    for p in params {
        let _ = write!(
            html,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(text(p, "name")),
            esc(text(p, "in")),
            type_name(&p["schema"]),
            if p["required"].as_bool().unwrap_or(false) {
                "yes"
            } else {
                ""
            },
            esc(text(p, "description")),
        );
    }
    html.push_str("</table>");
}

/// One schema: its description and its fields.
fn schema_section(html: &mut String, name: &str, schema: &Value) {
    let _ = write!(
        html,
        "<section class=\"schema\" id=\"schema-{n}\"><h3>{n}</h3>",
        n = esc(name)
    );
    let d = text(schema, "description");
    if !d.is_empty() {
        let _ = write!(html, "<p>{}</p>", esc(d));
    }
    let required: Vec<&str> = schema["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if let Some(props) = schema["properties"].as_object() {
        html.push_str(
            "<table><tr><th>field</th><th>type</th><th>required</th><th>description</th></tr>",
        );
        for (field, p) in props {
            let _ = write!(
                html,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(field),
                type_name(p),
                if required.contains(&field.as_str()) {
                    "yes"
                } else {
                    ""
                },
                esc(text(p, "description")),
            );
        }
        html.push_str("</table>");
    } else {
        let _ = write!(html, "<p>{}</p>", type_name(schema));
    }
    html.push_str("</section>");
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;color:#1d2430;background:#f7f8fa}\
main{max-width:70rem;margin:0 auto;padding:1rem}\
h1 small{font-weight:normal;color:#667}\
section{background:#fff;border:1px solid #dde;border-radius:6px;padding:.5rem 1rem;margin:.75rem 0}\
.method{background:#2f6fed;color:#fff;border-radius:4px;padding:0 .4rem;font-size:.85em}\
table{border-collapse:collapse;width:100%;margin:.5rem 0;font-size:.9em}\
th,td{border-bottom:1px solid #eee;text-align:left;padding:.25rem .5rem;vertical-align:top}\
code{font-family:ui-monospace,monospace}\
@media (max-width:700px){table{display:block;overflow-x:auto}}";
