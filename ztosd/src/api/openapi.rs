//! The OpenAPI 3.1 description of the API, generated from the handlers' `#[utoipa::path]`
//! attributes. It is served at `/api/v1/openapi.json` and kept in `docs/openapi.json`, which a
//! test compares with the generated document (`ZTOS_UPDATE_GOLDEN=1` rewrites it).

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::routes;

/// How a revision is described in responses; it lives with the answers that use it.
pub use ztos_model::api::config::RevisionMetaSchema;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "ZTOS API",
        description = "Management API of a ZTOS node. Over HTTPS every route except /health \
                       needs `Authorization: Bearer <token>`; over the local unix socket the \
                       caller is root and needs no token. Errors are JSON objects \
                       `{\"error\": \"...\", \"details\": [{\"path\": \"...\", \"message\": \"...\"}]}`."
    ),
    paths(
        routes::network::configure,
        routes::security::status,
        routes::security::wireguard_show,
        routes::security::wireguard_show_interface,
        routes::security::wireguard_genkey,
        routes::security::wireguard_rotate_key,
        routes::security::wireguard_preshared_key,
        routes::monitoring::logs,
        routes::config::running,
        routes::config::get_candidate,
        routes::config::put_candidate,
        routes::config::patch_candidate,
        routes::config::discard_candidate,
        routes::config::diff,
        routes::config::commit,
        routes::config::confirm,
        routes::config::rollback,
        routes::config::revisions,
        routes::config::revision,
        routes::config::schema,
        routes::system::interfaces,
        routes::system_services::services,
        routes::system_services::reboot,
        routes::system_services::poweroff,
        routes::system_services::reformat_perm,
        routes::update::upload,
        routes::update::from_url,
        routes::update::status,
        routes::update::history,
        routes::update::slots,
        routes::update::rollback,
        routes::bgp::summary,
        routes::bgp::neighbors,
        routes::bgp::neighbor,
        routes::bgp::routes,
        routes::bgp::decode,
        routes::plugins::list,
        routes::plugins::get,
        routes::tokens::list,
        routes::tokens::create,
        routes::tokens::revoke,
        routes::users::login,
        routes::users::logout,
        routes::users::list,
        routes::users::set_password,
        routes::users::delete,
        routes::users::setup,
        routes::users::create_first_admin,
        routes::system::health,
        routes::system::metrics,
        routes::system::openapi,
    ),
    components(schemas(RevisionMetaSchema)),
    modifiers(&BearerAuth, &CommonResponses),
    security(("bearer" = [])),
    tags(
        (name = "network", description = "The seed's network API: BGP peers, VXLAN, WireGuard peers"),
        (name = "security", description = "The seed's security API: encryption status; WireGuard public keys, peers, key generation and rotation (plugin ztos-wireguard)"),
        (name = "monitoring", description = "The seed's monitoring API: logs"),
        (name = "config", description = "Candidate, commit, confirm, rollback, revisions"),
        (name = "bgp", description = "BGP sessions and routes (plugin ztos-bgp)"),
        (name = "plugins", description = "Plugin processes"),
        (name = "tokens", description = "API tokens (admin)"),
        (name = "users", description = "Console users and logins; passwords are stored as argon2id hashes and never returned"),
        (name = "system", description = "Health, metrics, interfaces, this document"),
    )
)]
pub struct ApiDoc;

/// Adds the `bearer` security scheme that every operation refers to.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("ztos_<64 hex digits>")
                    .description(Some(
                        "An API token from `ztos token create` or POST /api/v1/tokens",
                    ))
                    .build(),
            ),
        );
    }
}

/// Adds the responses every authenticated route can give (401, 403, 500), so that each
/// handler lists only its own.
struct CommonResponses;

impl Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build()
        };
        let common = [
            ("401", "No token, or a token that is not valid"),
            ("403", "The token's role is below this route's"),
            ("500", "Internal error (details only in the daemon's log)"),
        ];
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                // Operations that set their own security (only /health, which has none)
                // cannot answer 401 or 403.
                let authenticated = operation.security.is_none();
                for (status, description) in common {
                    if status != "500" && !authenticated {
                        continue;
                    }
                    operation
                        .responses
                        .responses
                        .entry(status.to_string())
                        .or_insert_with(|| error(description).into());
                }
            }
        }
    }
}

/// The document as written to `docs/openapi.json`: pretty JSON with a final newline.
pub fn document() -> String {
    let mut text = ApiDoc::openapi()
        .to_pretty_json()
        .expect("the OpenAPI document serializes");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `docs/openapi.json` is the generated document; `ZTOS_UPDATE_GOLDEN=1` rewrites it.
    #[test]
    fn golden_openapi_document_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json");
        let generated = document();
        if std::env::var_os("ZTOS_UPDATE_GOLDEN").is_some() {
            std::fs::write(&path, &generated).unwrap();
            return;
        }
        let golden = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            golden == generated,
            "{} is out of date: run `ZTOS_UPDATE_GOLDEN=1 cargo test -p ztosd --lib api` and commit it",
            path.display()
        );
    }

    #[test]
    fn document_is_openapi_3_1_with_the_seed_routes_and_bearer_auth() {
        let doc: serde_json::Value = serde_json::from_str(&document()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        for path in [
            "/api/v1/network/configure",
            "/api/v1/security/status",
            "/api/v1/monitoring/logs",
        ] {
            assert!(doc["paths"][path].is_object(), "{path} missing");
        }
        assert!(doc["paths"]["/api/v1/network/configure"]["post"].is_object());
        assert_eq!(
            doc["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
        // /health needs no token: its security list holds only the empty requirement.
        let health = &doc["paths"]["/health"]["get"];
        assert_eq!(health["security"], serde_json::json!([{}]));
        assert!(health["responses"]["401"].is_null());
        let configure = &doc["paths"]["/api/v1/network/configure"]["post"];
        for status in ["200", "400", "401", "403", "422", "500"] {
            assert!(configure["responses"][status].is_object(), "{status}");
        }
    }
}
