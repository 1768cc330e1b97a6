//! berth-api: the Docker Engine API surface of berth.
//!
//! This is the only crate that knows Docker's routes and JSON. Handlers
//! parse a request into a core call, run it off the async runtime (the core
//! is synchronous and may block on disk), and shape the answer. Errors map
//! to status codes in one place ([`error`]). The API never touches the disk
//! itself.

#![recursion_limit = "256"]

mod archive;
mod backup_progress;
mod backups;
mod clone_progress;
mod container_images;
mod container_json;
mod containers;
pub mod error;
mod events;
mod exec;
mod exec_io;
mod extensions;
mod images;
pub mod metrics;
mod metrics_state;
mod networks;
mod plugins;
mod progress_json;
mod registry;
pub mod request;
mod state;
mod stats;
mod streams;
mod system;
mod tar_stream;
mod task_stream;
mod types;
pub mod version;
mod volume_archive;
mod volume_blocks;
mod volume_list_body;
pub mod volume_plugin_serve;
mod volumes;
pub mod web;

use axum::routing::{get, post};
use axum::Router;

pub use state::{ApiState, DaemonFacts};
pub use version::{ApiVersion, MAX_API_VERSION, MIN_API_VERSION};

/// The full API as a service: routes wrapped in the version middleware,
/// which strips `/vX.Y` and rejects versions out of range.
pub fn app(state: ApiState) -> version::Versioned<Router> {
    let routes = Router::new()
        .route("/_ping", get(system::ping).head(system::ping_head))
        .route("/version", get(system::version))
        .route("/info", get(system::info))
        .route("/plugins", get(plugins::list))
        .route("/plugins/{name}/json", get(plugins::inspect))
        .route("/plugins/privileges", get(plugins::managed))
        .route("/plugins/pull", post(plugins::managed))
        .route("/plugins/create", post(plugins::managed))
        .route("/plugins/{name}", axum::routing::delete(plugins::managed))
        .route("/plugins/{name}/{verb}", post(plugins::managed))
        .route("/events", get(events::events))
        .route("/system/df", get(system::disk_usage))
        .route("/volumes", get(volumes::list))
        .route("/volumes/create", post(volumes::create))
        .route("/volumes/prune", post(volumes::prune))
        .route(
            "/volumes/{name}",
            get(volumes::inspect).delete(volumes::remove),
        )
        .route("/containers/create", post(containers::create))
        .route("/containers/json", get(containers::list))
        .route("/containers/prune", post(containers::prune))
        .route("/containers/{id}/json", get(containers::inspect))
        .route("/containers/{id}/start", post(containers::start))
        .route("/containers/{id}/stop", post(containers::stop))
        .route("/containers/{id}/kill", post(containers::kill))
        .route("/containers/{id}/wait", post(containers::wait))
        .route("/containers/{id}/attach", post(containers::attach))
        .route("/containers/{id}/logs", get(containers::logs))
        .route("/containers/{id}/exec", post(exec::create))
        .route(
            "/containers/{id}/archive",
            get(archive::get).head(archive::stat).put(archive::put),
        )
        .route("/containers/{id}/pause", post(containers::pause))
        .route("/containers/{id}/update", post(containers::update))
        .route("/containers/{id}/stats", get(stats::stats))
        .route("/containers/{id}/top", get(stats::top))
        .route("/containers/{id}/changes", get(container_images::changes))
        .route("/containers/{id}/export", get(container_images::export))
        .route("/commit", post(container_images::commit))
        .route("/containers/{id}/restart", post(containers::restart))
        .route("/containers/{id}/rename", post(containers::rename))
        .route("/containers/{id}/resize", post(containers::resize))
        .route("/containers/{id}/unpause", post(containers::unpause))
        .route("/exec/{id}/start", post(exec::start))
        .route("/exec/{id}/resize", post(exec::resize))
        .route("/exec/{id}/json", get(exec::inspect))
        .route(
            "/containers/{id}",
            axum::routing::delete(containers::remove),
        )
        .route(
            "/berth/v1/volumes/{name}/snapshots",
            get(extensions::snapshots).post(extensions::snapshot_create),
        )
        .route(
            "/berth/v1/volumes/{name}/snapshots/{snap}",
            axum::routing::delete(extensions::snapshot_remove),
        )
        .route(
            "/berth/v1/volumes/{name}/snapshots/{snap}/restore",
            post(extensions::snapshot_restore),
        )
        .route(
            "/berth/v1/volumes/{name}/snapshots/{snap}/blocks",
            get(volume_blocks::send),
        )
        .route(
            "/berth/v1/volumes/{name}/blocks",
            post(volume_blocks::receive),
        )
        .route("/berth/v1/volumes/{name}/clone", post(extensions::clone))
        .route(
            "/berth/v1/volumes/{name}/export",
            get(volume_archive::export),
        )
        .route(
            "/berth/v1/volumes/{name}/import",
            post(volume_archive::import),
        )
        // Podman's shapes of the same two (podman volume export/import,
        // its bindings): the same handlers.
        .route("/libpod/volumes/{name}/export", get(volume_archive::export))
        .route(
            "/libpod/volumes/{name}/import",
            post(volume_archive::import),
        )
        .route(
            "/berth/v1/backup/repos",
            get(backups::repos).post(backups::add_repo),
        )
        .route(
            "/berth/v1/backup/repos/{name}",
            get(backups::repo).delete(backups::remove_repo),
        )
        .route(
            "/berth/v1/backup/repos/{name}/forget",
            post(backups::forget),
        )
        .route("/berth/v1/backup/repos/{name}/prune", post(backups::prune))
        .route("/berth/v1/backup/repos/{name}/check", post(backups::check))
        .route("/berth/v1/volumes/{name}/backup", post(backups::backup))
        .route(
            "/berth/v1/volumes/{name}/backup-schedule",
            get(backups::schedule)
                .put(backups::set_schedule)
                .delete(backups::remove_schedule),
        )
        .route("/berth/v1/backups", get(backups::list))
        .route("/berth/v1/backups/restore", post(backups::restore))
        .route("/berth/v1/pools", get(extensions::pools))
        .route("/berth/v1/pools/trim", post(extensions::trim))
        .route("/berth/v1/volumes/{name}/resize", post(extensions::resize))
        .route("/berth/v1/volumes/{name}/rename", post(extensions::rename))
        .route("/berth/v1/volumes/{name}/labels", post(extensions::labels))
        .route("/images/create", post(images::create))
        .route("/auth", post(registry::auth))
        .route("/images/load", post(images::load))
        .route("/images/get", get(images::save_many))
        .route("/distribution/{*rest}", get(registry::distribution))
        .route("/images/json", get(images::list))
        .route("/images/prune", post(images::prune))
        .route("/networks", get(networks::list))
        .route("/networks/create", post(networks::create))
        .route("/networks/prune", post(networks::prune))
        .route("/networks/{id}/connect", post(networks::connect))
        .route("/networks/{id}/disconnect", post(networks::disconnect))
        .route("/swarm/leave", post(networks::swarm_leave))
        .route(
            "/networks/{id}",
            get(networks::inspect).delete(networks::remove),
        )
        .route("/build/prune", post(system::prune_build_cache))
        .route(
            "/images/{*rest}",
            get(images::by_name)
                .post(images::by_name)
                .delete(images::by_name),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track_route,
        ))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::not_found)
        .layer(axum::middleware::map_response(error::json_rejections))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::count_unmatched,
        ))
        .with_state(state);
    version::Versioned::new(routes)
}
