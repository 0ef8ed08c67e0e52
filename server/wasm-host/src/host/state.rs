//! `eddy:udf/keyed-state`: value, list and map state through handles bound to the current key.

use super::{ListState, MapState, ValueState};
use crate::bindings::keyed_state::{
    Host, HostListState, HostMapState, HostValueState, StateDescriptor, Ttl, TtlUpdate, TtlVisibility,
};
use crate::instance::HostState;
use eddy_engine::operator::process::StateHandle;
use eddy_engine::spec::{Millis, TtlCleanup, TtlSpec};
use eddy_engine::state::{StateDescriptor as Descriptor, StateKind};
use wasmtime::component::Resource;

fn descriptor(d: StateDescriptor, kind: StateKind) -> Descriptor {
    let ttl = d.ttl.map(|Ttl { time_to_live_ms, update, visibility }| TtlSpec {
        time_to_live: Millis(i64::try_from(time_to_live_ms).unwrap_or(i64::MAX)),
        update: match update {
            TtlUpdate::OnCreateAndWrite => eddy_engine::spec::TtlUpdate::OnCreateAndWrite,
            TtlUpdate::OnReadAndWrite => eddy_engine::spec::TtlUpdate::OnReadAndWrite,
        },
        visibility: match visibility {
            TtlVisibility::NeverReturnExpired => eddy_engine::spec::TtlVisibility::NeverReturnExpired,
            TtlVisibility::ReturnExpiredIfNotCleanedUp => eddy_engine::spec::TtlVisibility::ReturnExpiredIfNotCleanedUp,
        },
        cleanup: TtlCleanup::default(),
    });
    Descriptor { name: d.name, kind, ttl }
}

fn lost() -> String {
    "this state handle is no longer valid".to_string()
}

impl HostState {
    /// Opens a state, if the module declares it so (a module that declares its states must keep to them, so that
    /// upgrades checked against the declarations hold).
    fn open_declared(&mut self, d: StateDescriptor, kind: StateKind) -> Result<StateHandle, String> {
        if let Some(declared) = &self.declared_states {
            let Some(state) = declared.iter().find(|s| s.name == d.name) else {
                let names: Vec<&str> = declared.iter().map(|s| s.name.as_str()).collect();
                return Err(format!(
                    "state `{}` is not among the states this module declares ({}); declare it",
                    d.name,
                    names.join(", ")
                ));
            };
            if state.kind != kind || state.ttl_ms.is_some() != d.ttl.is_some() {
                let ttl = |has: bool| if has { " with a time-to-live" } else { "" };
                return Err(format!(
                    "state `{}` is declared as a {} state{} and cannot be opened as a {} state{}",
                    d.name,
                    state.kind.name(),
                    ttl(state.ttl_ms.is_some()),
                    kind.name(),
                    ttl(d.ttl.is_some())
                ));
            }
        }
        self.process.open_state(&descriptor(d, kind))
    }

    fn handle<T: 'static>(&self, res: &Resource<T>, get: impl Fn(&T) -> &StateHandle) -> Result<StateHandle, String> {
        self.table.get(res).map(|r| get(r).clone()).map_err(|_| lost())
    }
}

impl Host for HostState {}

impl HostValueState for HostState {
    fn open(&mut self, d: StateDescriptor) -> Result<Resource<ValueState>, String> {
        let handle = self.open_declared(d, StateKind::Value)?;
        self.table.push(ValueState(handle)).map_err(|e| e.to_string())
    }

    fn get(&mut self, res: Resource<ValueState>) -> Result<Option<Vec<u8>>, String> {
        let handle = self.handle(&res, |s| &s.0)?;
        self.process.value_get(&handle)
    }

    fn set(&mut self, res: Resource<ValueState>, value: Vec<u8>) -> Result<(), String> {
        let handle = self.handle(&res, |s| &s.0)?;
        self.process.value_set(&handle, &value)
    }

    fn clear(&mut self, res: Resource<ValueState>) -> Result<(), String> {
        let handle = self.handle(&res, |s| &s.0)?;
        self.process.clear(&handle)
    }

    fn drop(&mut self, res: Resource<ValueState>) -> wasmtime::Result<()> {
        self.table.delete(res)?;
        Ok(())
    }
}

impl HostListState for HostState {
    fn open(&mut self, d: StateDescriptor) -> Result<Resource<ListState>, String> {
        let handle = self.open_declared(d, StateKind::List)?;
        self.table.push(ListState(handle)).map_err(|e| e.to_string())
    }

    fn get(&mut self, res: Resource<ListState>) -> Result<Vec<Vec<u8>>, String> {
        let handle = self.handle(&res, |s| &s.0)?;
        self.process.list_get(&handle)
    }

    fn add(&mut self, res: Resource<ListState>, value: Vec<u8>) -> Result<(), String> {
        let handle = self.handle(&res, |s| &s.0)?;
        self.process.list_add(&handle, &value)
    }

    fn update(&mut self, res: Resource<ListState>, values: Vec<Vec<u8>>) -> Result<(), String> {
        let handle = self.handle(&res, |s| &s.0)?;
        self.process.list_update(&handle, &values)
    }

    fn clear(&mut self, res: Resource<ListState>) -> Result<(), String> {
        let handle = self.handle(&res, |s| &s.0)?;
        self.process.clear(&handle)
    }

    fn drop(&mut self, res: Resource<ListState>) -> wasmtime::Result<()> {
        self.table.delete(res)?;
        Ok(())
    }
}

impl HostMapState for HostState {
    fn open(&mut self, d: StateDescriptor) -> Result<Resource<MapState>, String> {
        let handle = self.open_declared(d, StateKind::Map)?;
        self.table.push(MapState(handle)).map_err(|e| e.to_string())
    }

    fn get(&mut self, res: Resource<MapState>, key: Vec<u8>) -> Result<Option<Vec<u8>>, String> {
        let handle = self.handle(&res, |s| &s.0)?;
        self.process.map_get(&handle, &key)
    }

    fn put(&mut self, res: Resource<MapState>, key: Vec<u8>, value: Vec<u8>) -> Result<(), String> {
        let handle = self.handle(&res, |s| &s.0)?;
        self.process.map_put(&handle, &key, &value)
    }

    fn remove(&mut self, res: Resource<MapState>, key: Vec<u8>) -> Result<(), String> {
        let handle = self.handle(&res, |s| &s.0)?;
        self.process.map_remove(&handle, &key)
    }

    fn contains(&mut self, res: Resource<MapState>, key: Vec<u8>) -> Result<bool, String> {
        let handle = self.handle(&res, |s| &s.0)?;
        self.process.map_get(&handle, &key).map(|v| v.is_some())
    }

    fn entries(&mut self, res: Resource<MapState>) -> Result<Vec<(Vec<u8>, Vec<u8>)>, String> {
        let handle = self.handle(&res, |s| &s.0)?;
        self.process.map_entries(&handle)
    }

    fn is_empty(&mut self, res: Resource<MapState>) -> Result<bool, String> {
        let handle = self.handle(&res, |s| &s.0)?;
        self.process.map_entries(&handle).map(|e| e.is_empty())
    }

    fn clear(&mut self, res: Resource<MapState>) -> Result<(), String> {
        let handle = self.handle(&res, |s| &s.0)?;
        self.process.clear(&handle)
    }

    fn drop(&mut self, res: Resource<MapState>) -> wasmtime::Result<()> {
        self.table.delete(res)?;
        Ok(())
    }
}
