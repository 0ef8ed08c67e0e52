//! Each tenant's quotas: the server's defaults, then the tenant's own in the config, then what an admin set over
//! the API (kept in the control plane, so it survives restarts).

use crate::config::{Quota, QuotaOverrides, ServerConfig};
use crate::store::Store;
use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::Arc;

/// The quotas in force.
pub struct Quotas {
    config: Arc<ServerConfig>,
    store: Store,
    set_by_admin: RwLock<HashMap<String, QuotaOverrides>>,
}

impl Quotas {
    /// The config's quotas, with what an admin stored over them.
    pub fn open(config: Arc<ServerConfig>, store: Store) -> Quotas {
        let set_by_admin = RwLock::new(store.quotas().into_iter().collect());
        Quotas { config, store, set_by_admin }
    }

    /// `tenant`'s quotas now.
    pub fn of(&self, tenant: &str) -> Quota {
        let base = self.config.quota_of(tenant);
        self.set_by_admin.read().get(tenant).map_or(base, |overrides| overrides.over(base))
    }

    /// Reads again what an admin set, for every tenant: in a cluster another server may have changed it.
    pub fn refresh(&self) {
        let stored: HashMap<String, QuotaOverrides> = self.store.quotas().into_iter().collect();
        *self.set_by_admin.write() = stored;
    }

    /// Replaces what an admin set for `tenant` (fields left out fall back to the config); returns the quotas now.
    pub fn set(&self, tenant: &str, overrides: QuotaOverrides) -> std::io::Result<Quota> {
        self.store.put_quota(tenant, &overrides)?;
        self.set_by_admin.write().insert(tenant.to_string(), overrides);
        Ok(self.of(tenant))
    }
}
