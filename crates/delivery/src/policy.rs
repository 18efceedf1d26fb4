//! What the core enforces for one app: token expiries, blocks, blacklists and groups. The shell
//! persists every change and loads the rows at startup ([`crate::PolicyRows`]).

use std::collections::{HashMap, HashSet};

#[derive(Default)]
pub struct Policy {
    /// user → tokens issued before this (ms) are expired.
    pub token_expiry: HashMap<String, i64>,
    /// user → blocked until (ms).
    pub blocks: HashMap<String, i64>,
    /// user → the users they blacklisted.
    pub blacklists: HashMap<String, HashSet<String>>,
    /// group → members.
    pub groups: HashMap<String, HashSet<String>>,
}

impl Policy {
    /// From the persisted rows.
    pub fn from_rows(rows: crate::PolicyRows) -> Self {
        let mut p = Policy { token_expiry: rows.token_expiry, blocks: rows.blocks, ..Policy::default() };
        for (owner, other) in rows.blacklists {
            p.blacklists.entry(owner).or_default().insert(other);
        }
        for g in rows.groups {
            p.groups.entry(g).or_default();
        }
        for (g, u) in rows.members {
            p.groups.entry(g).or_default().insert(u);
        }
        p
    }

    pub fn blacklisted(&self, owner: &str, other: &str) -> bool {
        self.blacklists.get(owner).is_some_and(|s| s.contains(other))
    }

    pub fn blocked(&self, user: &str, now_ms: i64) -> bool {
        self.blocks.get(user).is_some_and(|until| *until > now_ms)
    }

    /// A token of `user` issued at `iat` was expired by the operator.
    pub fn token_expired(&self, user: &str, iat: i64) -> bool {
        self.token_expiry.get(user).is_some_and(|before| iat < *before)
    }

    pub fn blacklist(&mut self, owner: &str, others: &[String], add: bool) {
        if add {
            self.blacklists.entry(owner.to_owned()).or_default().extend(others.iter().cloned());
        } else if let Some(set) = self.blacklists.get_mut(owner) {
            for o in others {
                set.remove(o);
            }
            if set.is_empty() {
                self.blacklists.remove(owner);
            }
        }
    }

    pub fn blacklist_of(&self, owner: &str) -> Vec<String> {
        let mut v: Vec<String> = self.blacklists.get(owner).map(|s| s.iter().cloned().collect()).unwrap_or_default();
        v.sort();
        v
    }

    pub fn group_join(&mut self, group: &str, users: &[String]) {
        self.groups.entry(group.to_owned()).or_default().extend(users.iter().cloned());
    }

    pub fn group_quit(&mut self, group: &str, users: &[String]) {
        if let Some(m) = self.groups.get_mut(group) {
            for u in users {
                m.remove(u);
            }
        }
    }

    /// Members of `group`, sorted, or `None` if it does not exist.
    pub fn group_members(&self, group: &str) -> Option<Vec<String>> {
        self.groups.get(group).map(|m| {
            let mut v: Vec<String> = m.iter().cloned().collect();
            v.sort();
            v
        })
    }

    /// `(user, blocked until ms)` of users blocked at `now_ms`, sorted.
    pub fn blocked_users(&self, now_ms: i64) -> Vec<(String, i64)> {
        let mut v: Vec<_> = self.blocks.iter().filter(|(_, until)| **until > now_ms).map(|(u, until)| (u.clone(), *until)).collect();
        v.sort();
        v
    }
}
