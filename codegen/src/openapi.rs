//! OpenAPI 3.1 document of an application, from the same IR as everything else.

use serde_json::{Value, json};

use crate::ir::{DocType, Field, FieldType, StandardColumn};
use crate::project::Project;

fn field_schema(ty: FieldType, f: Option<&Field>) -> Value {
    use FieldType as T;
    let mut s = match ty {
        T::Data | T::Phone | T::Text | T::Link => json!({"type": "string"}),
        T::Email => json!({"type": "string", "format": "email"}),
        T::Url => json!({"type": "string", "format": "uri"}),
        T::Select => json!({"type": "string", "enum": f.map(|f| f.options.clone()).unwrap_or_default()}),
        T::Int => json!({"type": "integer", "format": "int32"}),
        T::BigInt => json!({"type": "integer", "format": "int64"}),
        T::Float => json!({"type": "number", "format": "double"}),
        T::Currency | T::Decimal => json!({"type": ["number", "string"], "format": "decimal"}),
        T::Check => json!({"type": "boolean"}),
        T::Date => json!({"type": "string", "format": "date"}),
        T::Datetime => json!({"type": "string", "format": "date-time"}),
        T::Time => json!({"type": "string", "format": "time"}),
        T::Json => json!({}),
        T::Uuid => json!({"type": "string", "format": "uuid"}),
        // Accepted in requests, never in a response.
        T::Password => json!({"type": "string", "format": "password", "writeOnly": true}),
        T::Table => {
            let child = f.and_then(|f| f.to.as_deref()).map(crate::names::struct_name).unwrap_or_default();
            json!({"type": "array", "items": {"$ref": format!("#/components/schemas/{child}")}})
        }
    };
    if let (Some(f), Some(obj)) = (f, s.as_object_mut()) {
        if let Some(m) = f.max_length {
            obj.insert("maxLength".into(), json!(m));
        }
        if let Some(m) = f.min {
            obj.insert("minimum".into(), json!(m));
        }
        if let Some(m) = f.max {
            obj.insert("maximum".into(), json!(m));
        }
        if let Some(r) = &f.regex {
            obj.insert("pattern".into(), json!(r));
        }
        if let Some(d) = &f.description {
            obj.insert("description".into(), json!(d));
        }
        if f.read_only {
            obj.insert("readOnly".into(), json!(true));
        }
        if let (Some(to), FieldType::Link) = (&f.to, f.ty) {
            obj.entry("description").or_insert_with(|| json!(format!("The `name` of a {to}")));
        }
        // An optional field's column is nullable, and responses carry its null.
        if !f.required && f.ty != FieldType::Table && f.ty != FieldType::Json {
            if let Some(Value::String(t)) = obj.get("type").cloned() {
                obj.insert("type".into(), json!([t, "null"]));
            } else if let Some(Value::Array(mut ts)) = obj.get("type").cloned() {
                ts.push(json!("null"));
                obj.insert("type".into(), Value::Array(ts));
            }
        }
    }
    s
}

fn doctype_schema(d: &DocType) -> Value {
    let mut props = serde_json::Map::new();
    for c in d.standard_columns() {
        let mut s = field_schema(c.ty(), None);
        // Clients send `_version` (optimistic concurrency) and a child row's `id` (to update that
        // row); every other standard field is set by the server.
        let client_sent = c == StandardColumn::Version || (d.child && c == StandardColumn::Id);
        if let Some(obj) = s.as_object_mut().filter(|_| !client_sent) {
            obj.insert("readOnly".into(), json!(true));
        }
        if c == StandardColumn::Docstatus {
            s["enum"] = json!([0, 1, 2]);
        }
        props.insert(c.name().to_string(), s);
    }
    for f in &d.fields {
        props.insert(f.name.clone(), field_schema(f.ty, Some(f)));
    }
    let required: Vec<&str> = d.fields.iter().filter(|f| f.required && !f.read_only).map(|f| f.name.as_str()).collect();
    let mut schema = json!({"type": "object", "properties": props, "additionalProperties": false});
    if !required.is_empty() {
        schema["required"] = json!(required);
    }
    if let Some(desc) = &d.description {
        schema["description"] = json!(desc);
    }
    schema
}

fn error_responses(codes: &[&str]) -> serde_json::Map<String, Value> {
    codes.iter().map(|c| (c.to_string(), json!({"$ref": format!("#/components/responses/E{c}")}))).collect()
}

/// The OpenAPI 3.1 document, pretty-printed with a trailing newline.
pub fn document(project: &Project, title: &str, version: &str) -> String {
    let mut paths = serde_json::Map::new();
    let mut schemas = serde_json::Map::new();
    for d in &project.doctypes {
        let s = d.struct_name();
        let schema = doctype_schema(d);
        if !d.child {
            // PATCH and PUT are partial: the same fields, none required.
            let mut patch = schema.clone();
            if let Some(obj) = patch.as_object_mut() {
                obj.remove("required");
            }
            schemas.insert(format!("{s}Patch"), patch);
        }
        schemas.insert(s.clone(), schema);
        if d.child {
            continue;
        }
        let base = format!("/api/v1/{}", d.name.replace(' ', "%20"));
        let doc_ref = json!({"$ref": format!("#/components/schemas/{s}")});
        let doc_body = json!({"required": true, "content": {"application/json": {"schema": doc_ref}}});
        let one = |status: &str, desc: &str| json!({status: {"description": desc, "content": {"application/json": {"schema": doc_ref}}}});
        let merge = |mut a: Value, b: serde_json::Map<String, Value>| {
            if let Some(obj) = a.as_object_mut() {
                obj.extend(b);
            }
            a
        };
        let list_params = json!([
            {"$ref": "#/components/parameters/limit"}, {"$ref": "#/components/parameters/offset"},
            {"$ref": "#/components/parameters/order_by"}, {"$ref": "#/components/parameters/fields"},
            {"$ref": "#/components/parameters/filters"}, {"$ref": "#/components/parameters/or_filters"},
            {"$ref": "#/components/parameters/total"}, {"$ref": "#/components/parameters/expand"}
        ]);
        paths.insert(base.clone(), json!({
            "get": {
                "tags": [d.name], "summary": format!("List {}", d.name), "operationId": format!("list{s}"),
                "parameters": list_params,
                "responses": merge(json!({"200": {"description": "A page of documents", "content": {"application/json": {"schema": {
                    "type": "object",
                    "properties": {
                        "items": {"type": "array", "items": doc_ref},
                        "total": {"type": ["integer", "null"]}, "limit": {"type": "integer"},
                        "offset": {"type": "integer"}, "has_more": {"type": "boolean"}
                    }
                }}}}}), error_responses(&["400", "401", "403"])),
            },
            "post": {
                "tags": [d.name], "summary": format!("Create {}", d.name), "operationId": format!("create{s}"),
                "requestBody": doc_body,
                "responses": merge(one("201", "Created"), error_responses(&["400", "401", "403", "409", "422"])),
            }
        }));
        let ref_param = json!({"name": "ref", "in": "path", "required": true, "description": "`id` or `name`", "schema": {"type": "string"}});
        let if_match = json!({"name": "If-Match", "in": "header", "required": false, "schema": {"type": "string"}});
        let patch_body = json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{s}Patch")}}}});
        let update = json!({
            "tags": [d.name], "summary": format!("Update {} (partial)", d.name),
            "parameters": [if_match],
            "requestBody": patch_body,
            "responses": merge(one("200", "Updated"), error_responses(&["400", "401", "403", "404", "409", "412", "422"])),
        });
        let item = json!({
            "parameters": [ref_param],
            "get": {
                "tags": [d.name], "summary": format!("Get {}", d.name), "operationId": format!("get{s}"),
                "parameters": [{"$ref": "#/components/parameters/expand"}],
                "responses": merge(one("200", "The document"), error_responses(&["401", "403", "404"])),
            },
            "patch": merge(update.clone(), [("operationId".to_string(), json!(format!("update{s}")))].into_iter().collect()),
            "put": merge(update, [("operationId".to_string(), json!(format!("replace{s}")))].into_iter().collect()),
            "delete": {
                "tags": [d.name], "summary": format!("Delete {}", d.name), "operationId": format!("delete{s}"),
                "parameters": [if_match],
                "responses": merge(json!({"204": {"description": "Deleted"}}), error_responses(&["401", "403", "404", "409", "412"])),
            }
        });
        paths.insert(format!("{base}/{{ref}}"), item);
        let format = json!({"name": "format", "in": "query", "required": false, "schema": {"type": "string", "enum": ["html", "pdf"], "default": "html"}});
        paths.insert(
            format!("{base}/{{ref}}/print"),
            json!({
                "parameters": [ref_param],
                "get": {
                    "tags": [d.name], "summary": format!("Print {} (HTML, or PDF through Gotenberg)", d.name),
                    "operationId": format!("print{s}"),
                    "parameters": [format],
                    "responses": merge(json!({"200": {"description": "The printed document", "content": {
                        "text/html": {"schema": {"type": "string"}},
                        "application/pdf": {"schema": {"type": "string", "contentMediaType": "application/pdf"}}
                    }}}), error_responses(&["400", "401", "403", "404", "502", "503", "504"])),
                }
            }),
        );
        if d.track_changes {
            paths.insert(format!("{base}/{{ref}}/versions"), json!({
                "parameters": [ref_param],
                "get": {
                    "tags": [d.name], "summary": format!("Recorded changes of a {} (newest first)", d.name),
                    "operationId": format!("versions{s}"),
                    "parameters": [{"$ref": "#/components/parameters/limit"}, {"$ref": "#/components/parameters/offset"}],
                    "responses": merge(json!({"200": {"description": "A page of versions", "content": {"application/json": {"schema": {
                        "type": "object",
                        "properties": {
                            "items": {"type": "array", "items": {"type": "object", "properties": {
                                "name": {"type": "string"}, "user": {"type": "string"},
                                "creation": {"type": "string", "format": "date-time"}, "data": {"type": "object"}
                            }}},
                            "limit": {"type": "integer"}, "offset": {"type": "integer"}, "has_more": {"type": "boolean"}
                        }
                    }}}}}), error_responses(&["400", "401", "403", "404"])),
                }
            }));
        }
        if d.submittable {
            for (action, status, what) in [
                ("submit", "200", "Submitted (docstatus 1)"),
                ("cancel", "200", "Cancelled (docstatus 2)"),
                ("amend", "201", "A new draft amending a cancelled document"),
            ] {
                paths.insert(format!("{base}/{{ref}}/{action}"), json!({
                    "parameters": [ref_param],
                    "post": {
                        "tags": [d.name], "summary": format!("{} {}", capitalize(action), d.name),
                        "operationId": format!("{action}{s}"),
                        "parameters": [if_match],
                        "responses": merge(one(status, what), error_responses(&["401", "403", "404", "409", "412"])),
                    }
                }));
            }
        }
    }
    paths.insert("/api/meta/{doctype}".into(), json!({"get": {
        "tags": ["meta"], "summary": "Metadata of a DocType and the caller's permissions", "operationId": "getMeta",
        "parameters": [{"name": "doctype", "in": "path", "required": true, "schema": {"type": "string"}}],
        "responses": merge_static(json!({"200": {"description": "Fields and permissions", "content": {"application/json": {"schema": {"type": "object"}}}}}), error_responses(&["401", "404"]))
    }}));
    paths.insert("/health".into(), json!({"get": {"tags": ["ops"], "summary": "Liveness", "operationId": "health", "security": [], "responses": {"200": {"description": "The process is up"}}}}));
    if project.get("User").is_some() {
        auth_paths(&mut paths, &mut schemas);
    }

    schemas.insert(
        "Error".into(),
        json!({
            "type": "object", "required": ["error"],
            "properties": {"error": {"type": "object", "required": ["code", "message", "request_id"], "properties": {
                "code": {"type": "string"}, "message": {"type": "string"}, "request_id": {"type": "string"},
                "details": {"type": "array", "items": {"type": "object", "properties": {
                    "field": {"type": "string"}, "code": {"type": "string"}, "message": {"type": "string"}}}}
            }}}
        }),
    );
    let mut responses = serde_json::Map::new();
    for (code, desc) in [
        ("400", "Bad request"),
        ("401", "Unauthenticated"),
        ("403", "Forbidden"),
        ("404", "Not found"),
        ("409", "Conflict"),
        ("412", "Precondition failed"),
        ("422", "Validation failed"),
        ("502", "A dependency answered with an error"),
        ("503", "A dependency is unavailable (Retry-After when it is known)"),
        ("504", "A dependency did not answer in time"),
    ] {
        responses.insert(format!("E{code}"), json!({"description": desc, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}));
    }
    let doc = json!({
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": responses,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            "parameters": {
                "expand": {"name": "expand", "in": "query", "required": false, "schema": {"type": "string"},
                    "description": "Links to return as the linked documents the caller may read (else `{\"name\"}` only): `customer`, `customer(customer_name,email)`, and on a single document `items.<link>` for a Link in child rows; comma-separated, at most 10",
                    "example": "customer(customer_name,email)"},
                "limit": {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "default": 20}},
                "offset": {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0, "default": 0}},
                "order_by": {"name": "order_by", "in": "query", "schema": {"type": "string", "default": "-modified"}},
                "fields": {"name": "fields", "in": "query", "schema": {"type": "string"}},
                "filters": {"name": "filters", "in": "query", "description": "JSON array of [field, op, value]", "schema": {"type": "string"}},
                "or_filters": {"name": "or_filters", "in": "query", "schema": {"type": "string"}},
                "total": {"name": "total", "in": "query", "schema": {"type": "boolean", "default": true}}
            }
        }
    });
    let mut out = serde_json::to_string_pretty(&doc).unwrap_or_default();
    out.push('\n');
    out
}

/// The login, the caller's profile and password changes (with the built-in User DocType).
fn auth_paths(paths: &mut serde_json::Map<String, Value>, schemas: &mut serde_json::Map<String, Value>) {
    let body = |schema: &str| json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}});
    schemas.insert("LoginRequest".into(), json!({
        "type": "object", "required": ["username", "password"], "additionalProperties": false,
        "properties": {"username": {"type": "string", "description": "The user's email"}, "password": {"type": "string", "format": "password"}}
    }));
    schemas.insert("Token".into(), json!({
        "type": "object", "required": ["access_token", "token_type", "expires_in"],
        "properties": {"access_token": {"type": "string"}, "token_type": {"type": "string", "const": "bearer"}, "expires_in": {"type": "integer"}}
    }));
    schemas.insert("Me".into(), json!({
        "type": "object", "required": ["name", "roles", "system_manager"],
        "properties": {"name": {"type": "string"}, "full_name": {"type": ["string", "null"]}, "roles": {"type": "array", "items": {"type": "string"}}, "system_manager": {"type": "boolean"}}
    }));
    schemas.insert("PasswordChange".into(), json!({
        "type": "object", "required": ["password"], "additionalProperties": false,
        "properties": {
            "password": {"type": "string", "format": "password", "minLength": 8},
            "current_password": {"type": "string", "format": "password", "description": "Required unless the caller is a System Manager"},
            "user": {"type": "string", "description": "Another user's email (System Managers only)"}
        }
    }));
    paths.insert("/api/v1/auth/login".into(), json!({"post": {
        "tags": ["auth"], "summary": "Exchange an email and password for a bearer token", "operationId": "login", "security": [],
        "requestBody": body("LoginRequest"),
        "responses": merge_static(json!({
            "200": {"description": "A token", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Token"}}}},
            "429": {"description": "Too many attempts for this account or address"},
            "501": {"description": "This server verifies tokens it cannot issue"}
        }), error_responses(&["400", "401"]))
    }}));
    paths.insert("/api/v1/auth/me".into(), json!({"get": {
        "tags": ["auth"], "summary": "The caller", "operationId": "me",
        "responses": merge_static(json!({"200": {"description": "The caller's name and roles", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Me"}}}}}), error_responses(&["401"]))
    }}));
    paths.insert("/api/v1/auth/password".into(), json!({"post": {
        "tags": ["auth"], "summary": "Set a password", "operationId": "setPassword",
        "requestBody": body("PasswordChange"),
        "responses": merge_static(json!({"204": {"description": "The password was set"}, "429": {"description": "Too many attempts"}}), error_responses(&["400", "401", "403", "404", "422"]))
    }}));
}

fn merge_static(mut a: Value, b: serde_json::Map<String, Value>) -> Value {
    if let Some(obj) = a.as_object_mut() {
        obj.extend(b);
    }
    a
}

fn capitalize(s: &str) -> String {
    let mut cs = s.chars();
    cs.next().map(|c| c.to_uppercase().chain(cs).collect()).unwrap_or_default()
}
