//! QueryEvents' filters, written once as SQL for both backends.

use chrono::{DateTime, Utc};
use sqlx::QueryBuilder;

use crate::audit::{MODULE_RESOURCE_TYPES, Outcome};

/// A page of one chain's events. Every filter set narrows it; the text
/// filters are never empty strings (a filter left out is `None`).
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    pub chain_id: String,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub actor_user_id: Option<String>,
    pub actor_module_id: Option<String>,
    pub actor_api_key_id: Option<String>,
    pub actions: Vec<String>,
    pub action_prefix: Option<String>,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub outcome: Option<Outcome>,
    pub request_id: Option<String>,
    pub company_id: Option<String>,
    /// Events recorded by this module or about it (module isolation).
    pub visible_to_module: Option<String>,
    /// Only sequences above this.
    pub after_sequence: i64,
    /// Only sequences below this (a descending page's keyset).
    pub before_sequence: Option<i64>,
    pub descending: bool,
    pub limit: i64,
}

/// Adds `query`'s filters (all but the order and limit) to `select`.
pub(super) fn push_filters<DB>(select: &mut QueryBuilder<DB>, query: &EventQuery)
where
    DB: sqlx::Database,
    for<'t> String: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> &'t str: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> i64: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> DateTime<Utc>: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
{
    select
        .push(" WHERE chain_id = ")
        .push_bind(query.chain_id.as_str())
        .push(" AND sequence > ")
        .push_bind(query.after_sequence);
    if let Some(before) = query.before_sequence {
        select.push(" AND sequence < ").push_bind(before);
    }
    if let Some(since) = query.since {
        select.push(" AND recorded_at >= ").push_bind(since);
    }
    if let Some(until) = query.until {
        select.push(" AND recorded_at < ").push_bind(until);
    }
    // `<> ''` lets prepared (generic) plans match the partial indexes.
    let equal = [
        ("actor_user_id", &query.actor_user_id),
        ("actor_module_id", &query.actor_module_id),
        ("actor_api_key_id", &query.actor_api_key_id),
        ("resource_type", &query.resource_type),
        ("resource_id", &query.resource_id),
        ("request_id", &query.request_id),
        ("company_id", &query.company_id),
    ];
    for (column, value) in equal {
        if let Some(value) = value {
            select
                .push(format!(" AND {column} <> '' AND {column} = "))
                .push_bind(value.as_str());
        }
    }
    if let Some(outcome) = query.outcome {
        select.push(" AND outcome = ").push_bind(outcome.as_str());
    }
    if !query.actions.is_empty() {
        select.push(" AND action IN (");
        let mut actions = select.separated(", ");
        for action in &query.actions {
            actions.push_bind(action.as_str());
        }
        select.push(")");
    }
    if let Some(prefix) = &query.action_prefix {
        // Actions are ASCII below DEL, so the prefix's range ends there.
        select
            .push(" AND action >= ")
            .push_bind(prefix.as_str())
            .push(" AND action < ")
            .push_bind(format!("{prefix}\u{7f}"));
    }
    if let Some(module_id) = &query.visible_to_module {
        select
            .push(" AND (actor_module_id = ")
            .push_bind(module_id.as_str())
            .push(" OR (resource_id = ")
            .push_bind(module_id.as_str())
            .push(" AND resource_type IN (");
        let mut types = select.separated(", ");
        for resource_type in MODULE_RESOURCE_TYPES {
            types.push_bind(resource_type);
        }
        select.push(")))");
    }
}
