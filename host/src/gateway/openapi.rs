//! The app's API as an OpenAPI 3.1 document, generated from the manifest:
//! every route with its method, path parameters, who may call it (security
//! schemes from the JWT providers), its documented bodies, and the error
//! responses the gateway itself can give.

use crate::manifest::{AuthRule, FunctionSpec, Manifest, Route, Segment};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// The OpenAPI version the document declares.
pub const OPENAPI_VERSION: &str = "3.1.0";

/// `info.version` when the manifest's `[app]` has no `version`.
pub const DEFAULT_API_VERSION: &str = "1";

/// Methods a route without a method is documented under.
const ANY_METHOD: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// The methods an OpenAPI 3.1 path item has fields for; a route with another
/// method (`PURGE`, say) is left out of the document.
const OPENAPI_METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// The document for `manifest`.
pub fn document(manifest: &Manifest) -> Value {
    // Templated paths with the same shape are the same path to OpenAPI, so
    // the first route of a shape names its parameters for all.
    let mut shapes: BTreeMap<String, String> = BTreeMap::new();
    let mut operation_ids = std::collections::HashSet::new();
    let mut paths: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    for function in &manifest.functions {
        for (i, route) in function.routes.iter().enumerate() {
            let templated = shapes
                .entry(route.pattern.shape())
                .or_insert_with(|| openapi_path(route))
                .clone();
            let item = paths.entry(templated.clone()).or_default();
            if !item.contains_key("parameters") {
                let params = path_parameters(&templated);
                if !params.is_empty() {
                    item.insert("parameters".into(), Value::Array(params));
                }
            }
            let methods: Vec<String> = match &route.method {
                Some(m) => vec![m.as_str().to_ascii_lowercase()],
                None => ANY_METHOD.iter().map(|m| m.to_string()).collect(),
            };
            for method in methods {
                if !OPENAPI_METHODS.contains(&method.as_str()) {
                    continue;
                }
                let mut op = operation(manifest, function, i, route, &method, &templated);
                // Ids must be unique; different paths can clean to one id.
                let base = op["operationId"].as_str().unwrap_or_default().to_owned();
                let mut id = base.clone();
                let mut n = 2;
                while !operation_ids.insert(id.clone()) {
                    id = format!("{base}_{n}");
                    n += 1;
                }
                op["operationId"] = json!(id);
                item.insert(method, op);
            }
        }
    }
    let mut schemes = Map::new();
    for p in &manifest.auth_providers {
        let mut description = format!("JWT from provider `{}`", p.name);
        if let Some(issuer) = &p.issuer {
            description.push_str(&format!(", issuer `{issuer}`"));
        }
        if !p.audience.is_empty() {
            description.push_str(&format!(", audience `{}`", p.audience.join("`, `")));
        }
        schemes.insert(
            p.name.clone(),
            json!({
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT",
                "description": description,
            }),
        );
    }
    let mut info = json!({
        "title": manifest.name,
        "version": manifest.version.as_deref().unwrap_or(DEFAULT_API_VERSION),
    });
    if let Some(d) = &manifest.description {
        info["description"] = json!(d);
    }
    let tags: Vec<Value> = manifest
        .functions
        .iter()
        .filter(|f| !f.routes.is_empty())
        .map(|f| {
            let mut tag = json!({ "name": f.id.as_str() });
            if let Some(d) = &f.description {
                tag["description"] = json!(d);
            }
            tag
        })
        .collect();
    json!({
        "openapi": OPENAPI_VERSION,
        "info": info,
        "tags": tags,
        "paths": paths,
        "components": {
            "securitySchemes": schemes,
            "schemas": { "Error": error_schema() },
            "responses": standard_responses(),
        },
    })
}

/// `/users/:id` is `/users/{id}`; a trailing `/...` is `{path}`.
fn openapi_path(route: &Route) -> String {
    let mut out = String::new();
    for seg in &route.pattern.segments {
        out.push('/');
        match seg {
            Segment::Literal(s) => out.push_str(s),
            Segment::Param(p) => {
                out.push('{');
                out.push_str(p);
                out.push('}');
            }
        }
    }
    if route.pattern.wildcard {
        let taken = route.pattern.param_names().any(|p| p == "path");
        out.push_str(if taken { "/{rest}" } else { "/{path}" });
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

fn path_parameters(templated: &str) -> Vec<Value> {
    templated
        .split('/')
        .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| {
            json!({
                "name": name,
                "in": "path",
                "required": true,
                "schema": { "type": "string" },
            })
        })
        .collect()
}

fn operation(
    manifest: &Manifest,
    function: &FunctionSpec,
    index: usize,
    route: &Route,
    method: &str,
    templated: &str,
) -> Value {
    let options = &function.route_options[index];
    let mut op = Map::new();
    op.insert("tags".into(), json!([function.id.as_str()]));
    op.insert(
        "operationId".into(),
        json!(operation_id(function.id.as_str(), method, templated)),
    );
    op.insert(
        "summary".into(),
        json!(options.summary.clone().unwrap_or_else(|| route.to_string())),
    );
    if let Some(d) = &options.description {
        op.insert("description".into(), json!(d));
    }
    if let Some(schema) = &options.request_body {
        op.insert(
            "requestBody".into(),
            json!({ "required": true, "content": { "application/json": { "schema": schema } } }),
        );
    }
    let mut responses = Map::new();
    let mut ok = json!({ "description": "The function's answer" });
    if let Some(schema) = &options.response {
        ok["content"] = json!({ "application/json": { "schema": schema } });
    }
    responses.insert("200".into(), ok);
    let reference = |name: &str| json!({ "$ref": format!("#/components/responses/{name}") });
    let auth = options
        .auth
        .as_ref()
        .or(function.auth.as_ref())
        .or(manifest.auth.as_ref())
        .unwrap_or(&AuthRule::Public);
    match auth {
        AuthRule::Public => {
            op.insert("security".into(), json!([]));
        }
        AuthRule::Jwt {
            provider,
            scopes,
            roles,
        } => {
            let required: Vec<&String> = scopes.iter().chain(roles).collect();
            op.insert("security".into(), json!([{ provider: required }]));
            responses.insert("401".into(), reference("Unauthorized"));
            if !scopes.is_empty() || !roles.is_empty() {
                responses.insert("403".into(), reference("Forbidden"));
            }
        }
    }
    if matches!(method, "post" | "put" | "patch") {
        responses.insert("413".into(), reference("PayloadTooLarge"));
    }
    if options.rate_limit.is_some() || function.rate_limit.is_some() {
        responses.insert("429".into(), reference("TooManyRequests"));
    }
    for (status, name) in [
        ("500", "FunctionFailed"),
        ("503", "Overloaded"),
        ("504", "Timeout"),
    ] {
        responses.insert(status.into(), reference(name));
    }
    op.insert("responses".into(), Value::Object(responses));
    Value::Object(op)
}

fn operation_id(function: &str, method: &str, path: &str) -> String {
    let mut id = format!("{function}_{method}");
    for part in path.split('/').filter(|p| !p.is_empty()) {
        id.push('_');
        id.extend(
            part.chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-'),
        );
    }
    id
}

fn error_schema() -> Value {
    json!({
        "type": "object",
        "description": "Every error the gateway gives has this body.",
        "required": ["status", "error", "message", "request_id"],
        "properties": {
            "status": { "type": "integer", "description": "The HTTP status code" },
            "error": { "type": "string", "description": "A stable machine-readable code, e.g. `unauthorized`" },
            "message": { "type": "string", "description": "What happened, for people" },
            "request_id": { "type": "string", "description": "The request's `x-request-id`" },
        },
    })
}

fn standard_responses() -> Value {
    let error = |description: &str| {
        json!({
            "description": description,
            "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } },
        })
    };
    let mut unauthorized = error("Missing or invalid bearer token");
    unauthorized["headers"] = json!({
        "WWW-Authenticate": {
            "description": "`Bearer` with `error` and `error_description` (RFC 6750)",
            "schema": { "type": "string" },
        },
    });
    let mut limited = error("Over the rate limit");
    limited["headers"] = json!({
        "Retry-After": {
            "description": "Seconds until a request would be allowed",
            "schema": { "type": "integer" },
        },
    });
    let mut overloaded = error("Every instance is busy; try again");
    overloaded["headers"] = limited["headers"].clone();
    json!({
        "Unauthorized": unauthorized,
        "Forbidden": error("The token lacks a required scope or role"),
        "PayloadTooLarge": error("The request body is over the function's limit"),
        "TooManyRequests": limited,
        "FunctionFailed": error("The function crashed or returned no response"),
        "Overloaded": overloaded,
        "Timeout": error("The function ran past its time limit"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn routes_become_templated_paths() {
        let m = Manifest::parse(
            Path::new("/app/nimbus.toml"),
            r#"
version = 1
[app]
name = "shop"
[auth.users]
hs256_secret = "s"
[functions.catalog]
source = "c.wasm"
routes = ["GET /products/:id", { route = "PUT /products/:id", auth = { require = "users", roles = ["admin"] } }, "/static/..."]
"#,
        )
        .unwrap();
        let doc = document(&m);
        let item = &doc["paths"]["/products/{id}"];
        assert_eq!(item["parameters"][0]["name"], "id");
        assert_eq!(item["get"]["security"], json!([]));
        assert_eq!(item["put"]["security"], json!([{ "users": ["admin"] }]));
        assert!(item["put"]["responses"]["403"].is_object());
        assert!(doc["paths"]["/static/{path}"]["delete"].is_object());
        assert_eq!(
            doc["components"]["securitySchemes"]["users"]["scheme"],
            "bearer"
        );
    }
}
