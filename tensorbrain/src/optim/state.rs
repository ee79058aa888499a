//! Optimizer state as plain data: what `state_dict` returns and `load_state_dict` takes, and its
//! flat form (named tensors + string metadata) for safetensors checkpoints.

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Map, Value};

use crate::tensor::{Error, Result, Tensor};

/// Named scalar hyperparameters of one parameter group (`lr`, `beta1`, ...; flags are 0 or 1).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Hyperparameters(pub BTreeMap<String, f64>);

impl Hyperparameters {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces `key`.
    pub fn set(&mut self, key: &str, value: f64) {
        self.0.insert(key.to_string(), value);
    }

    /// Builder form of [`Hyperparameters::set`].
    pub fn with(mut self, key: &str, value: f64) -> Self {
        self.set(key, value);
        self
    }

    /// The value of `key`; a missing key is an error naming the optimizer.
    pub fn get(&self, optimizer: &str, key: &str) -> Result<f64> {
        self.0.get(key).copied().ok_or_else(|| {
            let known: Vec<&str> = self.0.keys().map(|k| k.as_str()).collect();
            Error::Msg(format!("{optimizer} state: hyperparameter '{key}' is missing (the state has {known:?})"))
        })
    }

    /// A flag stored as 0/1.
    pub fn get_bool(&self, optimizer: &str, key: &str) -> Result<bool> {
        let v = self.get(optimizer, key)?;
        if v == 0.0 || v == 1.0 {
            Ok(v == 1.0)
        } else {
            Err(Error::Msg(format!("{optimizer} state: hyperparameter '{key}' is a flag and must be 0 or 1, got {v}")))
        }
    }
}

/// The state of one parameter: its step count and named buffers (`exp_avg`, ...), each of the
/// parameter's shape.
#[derive(Clone, Debug)]
pub struct ParamState {
    pub step: u64,
    pub buffers: BTreeMap<String, Tensor>,
}

/// One parameter group: its hyperparameters and how many parameters it holds.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupState {
    pub hyperparameters: Hyperparameters,
    pub num_params: usize,
}

/// A snapshot of an optimizer, like PyTorch's `optimizer.state_dict()`: parameters are
/// identified by their position (group by group), not by tensor identity.
#[derive(Clone, Debug)]
pub struct OptimizerState {
    /// The optimizer's name (`"sgd"`, `"adam"`, `"adamw"`, `"lion"`, `"rmsprop"`).
    pub optimizer: String,
    pub groups: Vec<GroupState>,
    /// One entry per parameter (`None`: the parameter never had a gradient at a step).
    pub params: Vec<Option<ParamState>>,
}

const KIND_KEY: &str = "optimizer.kind";
const GROUPS_KEY: &str = "optimizer.groups";
const STEPS_KEY: &str = "optimizer.steps";

fn bad(msg: impl std::fmt::Display) -> Error {
    Error::Msg(format!("optimizer state: {msg}"))
}

impl OptimizerState {
    /// Total number of parameters over all groups.
    pub fn num_params(&self) -> usize {
        self.groups.iter().map(|g| g.num_params).sum()
    }

    /// The state tensors, named `state.<param index>.<buffer>`, for a checkpoint writer. Pair
    /// with [`OptimizerState::metadata`].
    pub fn to_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (i, p) in self.params.iter().enumerate() {
            if let Some(p) = p {
                for (name, t) in &p.buffers {
                    out.push((format!("state.{i}.{name}"), t.clone()));
                }
            }
        }
        out
    }

    /// Everything that is not a tensor (optimizer name, groups and hyperparameters, step
    /// counts), as string metadata under `optimizer.*` keys. Floats are written so that they
    /// read back exactly (including `inf`).
    pub fn metadata(&self) -> HashMap<String, String> {
        let groups: Vec<Value> = self
            .groups
            .iter()
            .map(|g| {
                let h: Map<String, Value> =
                    g.hyperparameters.0.iter().map(|(k, v)| (k.clone(), Value::String(format!("{v:?}")))).collect();
                json!({ "num_params": g.num_params, "hyperparameters": h })
            })
            .collect();
        let steps: Map<String, Value> = self
            .params
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.as_ref().map(|p| (i.to_string(), json!(p.step))))
            .collect();
        HashMap::from([
            (KIND_KEY.to_string(), self.optimizer.clone()),
            (GROUPS_KEY.to_string(), Value::Array(groups).to_string()),
            (STEPS_KEY.to_string(), Value::Object(steps).to_string()),
        ])
    }

    /// Rebuilds a state from [`OptimizerState::to_tensors`] and [`OptimizerState::metadata`]
    /// output. Extra metadata keys are ignored; tensors must all be `state.<i>.<buffer>` names
    /// of parameters that have a step count.
    pub fn from_tensors(tensors: impl IntoIterator<Item = (String, Tensor)>, metadata: &HashMap<String, String>) -> Result<Self> {
        let get = |key: &str| metadata.get(key).ok_or_else(|| bad(format!("metadata key '{key}' is missing")));
        let optimizer = get(KIND_KEY)?.clone();
        let groups_json: Value =
            serde_json::from_str(get(GROUPS_KEY)?).map_err(|e| bad(format!("'{GROUPS_KEY}' is not valid JSON: {e}")))?;
        let Value::Array(groups_json) = groups_json else {
            return Err(bad(format!("'{GROUPS_KEY}' must be a JSON array")));
        };
        let mut groups = Vec::with_capacity(groups_json.len());
        for (gi, g) in groups_json.iter().enumerate() {
            let num_params = g
                .get("num_params")
                .and_then(Value::as_u64)
                .ok_or_else(|| bad(format!("group {gi} has no integer 'num_params'")))? as usize;
            let Some(Value::Object(h)) = g.get("hyperparameters") else {
                return Err(bad(format!("group {gi} has no 'hyperparameters' object")));
            };
            let mut hyper = Hyperparameters::new();
            for (k, v) in h {
                let v = match v {
                    Value::String(s) => s.parse::<f64>().ok(),
                    Value::Number(n) => n.as_f64(),
                    _ => None,
                }
                .ok_or_else(|| bad(format!("group {gi}: hyperparameter '{k}' is not a number: {v}")))?;
                hyper.set(k, v);
            }
            groups.push(GroupState { hyperparameters: hyper, num_params });
        }
        let total: usize = groups.iter().map(|g| g.num_params).sum();
        let mut params: Vec<Option<ParamState>> = vec![None; total];
        let steps_json: Value =
            serde_json::from_str(get(STEPS_KEY)?).map_err(|e| bad(format!("'{STEPS_KEY}' is not valid JSON: {e}")))?;
        let Value::Object(steps_json) = steps_json else {
            return Err(bad(format!("'{STEPS_KEY}' must be a JSON object")));
        };
        for (k, v) in &steps_json {
            let i: usize = k.parse().map_err(|_| bad(format!("step count key '{k}' is not a parameter index")))?;
            let step = v.as_u64().ok_or_else(|| bad(format!("step count of parameter {i} is not an integer: {v}")))?;
            let slot = params
                .get_mut(i)
                .ok_or_else(|| bad(format!("step count for parameter {i}, but the groups hold {total} parameters")))?;
            *slot = Some(ParamState { step, buffers: BTreeMap::new() });
        }
        for (name, t) in tensors {
            let parsed = name
                .strip_prefix("state.")
                .and_then(|rest| rest.split_once('.'))
                .and_then(|(i, buf)| Some((i.parse::<usize>().ok()?, buf)))
                .filter(|(_, buf)| !buf.is_empty());
            let Some((i, buf)) = parsed else {
                return Err(bad(format!("tensor '{name}' is not named state.<param index>.<buffer>")));
            };
            let Some(Some(p)) = params.get_mut(i) else {
                return Err(bad(format!("tensor '{name}' belongs to parameter {i}, which has no step count in the metadata")));
            };
            p.buffers.insert(buf.to_string(), t);
        }
        Ok(OptimizerState { optimizer, groups, params })
    }
}
