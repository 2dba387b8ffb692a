//! A tenant's roles as a graph: parents checked to be of the tenant, cycles
//! named by their path, depth bounded, and what a role holds through its
//! ancestors.

use std::collections::{BTreeSet, HashMap, HashSet};

use crate::{
    error::ApiError,
    store::rbac::{MAX_ROLE_DEPTH, RoleRecord},
};
use uuid::Uuid;

/// The roles of one tenant as a graph, with one role's grants and parents
/// possibly replaced by a proposed change.
pub struct RoleGraph<'a> {
    roles: HashMap<Uuid, (&'a str, &'a [Uuid], &'a [String])>,
}

impl<'a> RoleGraph<'a> {
    pub fn of(roles: &'a [RoleRecord]) -> RoleGraph<'a> {
        RoleGraph {
            roles: roles
                .iter()
                .map(|role| {
                    (
                        role.id,
                        (
                            role.key.as_str(),
                            role.parent_role_ids.as_slice(),
                            role.permissions.as_slice(),
                        ),
                    )
                })
                .collect(),
        }
    }

    /// Puts `role` (new or changed) into the graph, refusing parents that
    /// are not roles of the tenant, a cycle (named by its path of keys) and
    /// a chain of ancestors deeper than [`MAX_ROLE_DEPTH`].
    pub fn place(&mut self, role: &'a RoleRecord) -> Result<(), ApiError> {
        for parent_id in &role.parent_role_ids {
            if !self.roles.contains_key(parent_id) || *parent_id == role.id {
                return Err(if *parent_id == role.id {
                    ApiError::RoleCycle {
                        path: format!("{0} -> {0}", role.key),
                    }
                } else {
                    ApiError::NotFound {
                        resource_type: "parent role",
                    }
                });
            }
        }
        self.roles.insert(
            role.id,
            (&role.key, &role.parent_role_ids, &role.permissions),
        );
        if let Some(path) = self.cycle_through(role.id) {
            return Err(ApiError::RoleCycle {
                path: path.join(" -> "),
            });
        }
        let mut depths = HashMap::new();
        if self
            .roles
            .keys()
            .any(|&id| self.depth(id, &mut depths) > MAX_ROLE_DEPTH)
        {
            return Err(ApiError::RoleTooDeep {
                max_depth: MAX_ROLE_DEPTH,
            });
        }
        Ok(())
    }

    /// The keys along a path of parents from `start` back to itself.
    fn cycle_through(&self, start: Uuid) -> Option<Vec<&'a str>> {
        let mut path = vec![start];
        let mut seen = HashSet::new();
        self.search(start, &mut path, &mut seen)
            .then(|| path.iter().map(|id| self.roles[id].0).collect())
    }

    fn search(&self, target: Uuid, path: &mut Vec<Uuid>, seen: &mut HashSet<Uuid>) -> bool {
        let current = *path.last().expect("the path starts with the role");
        for &parent in self.roles.get(&current).map_or(&[][..], |role| role.1) {
            path.push(parent);
            if parent == target || (seen.insert(parent) && self.search(target, path, seen)) {
                return true;
            }
            path.pop();
        }
        false
    }

    /// The length of the longest chain of ancestors (the graph is acyclic).
    fn depth(&self, id: Uuid, depths: &mut HashMap<Uuid, i64>) -> i64 {
        if let Some(&depth) = depths.get(&id) {
            return depth;
        }
        let parents = self.roles.get(&id).map_or(&[][..], |role| role.1);
        let depth = parents
            .iter()
            .map(|&parent| 1 + self.depth(parent, depths))
            .max()
            .unwrap_or(0);
        depths.insert(id, depth);
        depth
    }

    /// The role and its ancestors, each once, nearest first.
    pub fn ancestry(&self, id: Uuid) -> Vec<Uuid> {
        let mut seen = vec![id];
        let mut next = 0;
        while let Some(&current) = seen.get(next) {
            next += 1;
            for &parent in self.roles.get(&current).map_or(&[][..], |role| role.1) {
                if !seen.contains(&parent) {
                    seen.push(parent);
                }
            }
        }
        seen.retain(|role| self.roles.contains_key(role));
        seen
    }

    /// The grants a role of the graph holds directly.
    pub fn own_grants(&self, id: Uuid) -> &'a [String] {
        self.roles.get(&id).map_or(&[][..], |role| role.2)
    }

    /// Every grant of the role and its ancestors.
    pub fn inherited_grants(&self, id: Uuid) -> BTreeSet<&'a str> {
        self.ancestry(id)
            .into_iter()
            .flat_map(|role| self.own_grants(role).iter().map(String::as_str))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock;

    fn new_etag() -> String {
        Uuid::now_v7().simple().to_string()
    }

    fn role(key: &str, parents: &[&RoleRecord], permissions: &[&str]) -> RoleRecord {
        let now = clock::now();
        RoleRecord {
            id: Uuid::now_v7(),
            tenant_id: Uuid::nil(),
            key: key.to_owned(),
            display_name: key.to_owned(),
            description: String::new(),
            system: false,
            permissions: permissions.iter().map(|p| (*p).to_owned()).collect(),
            parent_role_ids: parents.iter().map(|parent| parent.id).collect(),
            etag: new_etag(),
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn a_role_inherits_the_grants_of_every_ancestor_once() {
        let viewer = role("viewer", &[], &["inventory:item:read"]);
        let clerk = role("clerk", &[&viewer], &["inventory:item:write"]);
        let auditor = role("auditor", &[&viewer], &["finance:ledger:read"]);
        let manager = role("manager", &[&clerk, &auditor], &["inventory:*"]);
        let roles = [viewer, clerk, auditor, manager.clone()];
        let grants = RoleGraph::of(&roles).inherited_grants(manager.id);
        assert_eq!(
            grants.into_iter().collect::<Vec<_>>(),
            [
                "finance:ledger:read",
                "inventory:*",
                "inventory:item:read",
                "inventory:item:write"
            ]
        );
    }

    #[test]
    fn a_parent_change_that_closes_a_cycle_is_refused_with_its_path() {
        let a = role("a", &[], &[]);
        let b = role("b", &[&a], &[]);
        let c = role("c", &[&b], &[]);
        let roles = [a.clone(), b, c.clone()];
        let mut changed = a.clone();
        changed.parent_role_ids = vec![c.id];
        let error = RoleGraph::of(&roles).place(&changed).unwrap_err();
        match error {
            ApiError::RoleCycle { path } => assert_eq!(path, "a -> c -> b -> a"),
            other => panic!("{other:?}"),
        }
        let mut own_parent = a;
        own_parent.parent_role_ids = vec![own_parent.id];
        assert!(matches!(
            RoleGraph::of(&roles).place(&own_parent),
            Err(ApiError::RoleCycle { .. })
        ));
    }

    #[test]
    fn ancestors_deeper_than_the_bound_are_refused() {
        let mut roles = vec![role("r0", &[], &[])];
        for level in 1..=MAX_ROLE_DEPTH {
            let parent = roles.last().unwrap().clone();
            roles.push(role(&format!("r{level}"), &[&parent], &[]));
        }
        let deepest = roles.last().unwrap().clone();
        let one_more = role("too-deep", &[&deepest], &[]);
        let allowed = role("sibling", &[&roles[roles.len() - 2]], &[]);
        assert!(RoleGraph::of(&roles).place(&allowed).is_ok());
        assert!(matches!(
            RoleGraph::of(&roles).place(&one_more),
            Err(ApiError::RoleTooDeep { .. })
        ));
    }

    #[test]
    fn parents_must_be_roles_of_the_tenant() {
        let stranger = role("stranger", &[], &[]);
        let roles = [role("a", &[], &[])];
        let orphan = role("orphan", &[&stranger], &[]);
        assert!(matches!(
            RoleGraph::of(&roles).place(&orphan),
            Err(ApiError::NotFound { .. })
        ));
    }
}
