//! `docker rename`: a new unique name, with the rules and messages of create.

use crate::container::Container;
use crate::engine::{Engine, EngineError, Result};
use crate::names;

impl Engine {
    pub fn rename(&self, key: &str, new_name: &str) -> Result<()> {
        let new_name = new_name.trim_start_matches('/');
        if new_name.is_empty() {
            return Err(EngineError::Invalid(
                "Neither old nor new names may be empty".into(),
            ));
        }
        if !names::valid(new_name) {
            return Err(EngineError::Invalid(format!(
                "Invalid container name ({new_name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )));
        }
        let id = self.resolve(key)?;
        let lock = self.lock_for(&id);
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut c: Container = self.store().get(&id)?;
        let old_name = c.name.trim_start_matches('/').to_string();
        if old_name == new_name {
            return Err(EngineError::Invalid(
                "Renaming a container with the same name as its current name".into(),
            ));
        }
        // The name column is the unique one: take it first, then the record follows.
        self.store().rename(&id, new_name)?;
        c.name = format!("/{new_name}");
        if let Err(e) = self.save(&c) {
            let _ = self.store().rename(&id, &old_name);
            return Err(e);
        }
        self.container_event(&c, "rename", &[("oldName", format!("/{old_name}"))]);
        Ok(())
    }
}
