//! Evaluating fired windows: the window function runs once per batch of firings, over pane accumulators or over
//! stored elements, and each result is formatted and emitted with its window's last millisecond as timestamp.

use super::*;

impl WindowOperator {
    /// Evaluates the window function for every captured firing and emits the results.
    pub(super) fn flush_firings(&mut self, out: &mut Output) -> Result<(), TaskError> {
        if self.firings.is_empty() {
            return Ok(());
        }
        let mut firings = std::mem::take(&mut self.firings);
        self.fired_bytes = 0;
        let keys = std::mem::take(&mut self.fired_keys);
        let results = if self.accumulate {
            self.results_from_parts(&firings, &keys)?
        } else {
            self.results_from_elements(&firings, &keys)?
        };
        self.emit_results(&firings, &keys, results, out)?;
        // Keep the buffers' capacity for the next firings.
        firings.clear();
        self.firings = firings;
        self.fired_keys = keys;
        self.fired_keys.clear();
        Ok(())
    }

    fn emit_results(
        &mut self,
        firings: &[Firing],
        keys: &[u8],
        results: Option<Batch>,
        out: &mut Output,
    ) -> Result<(), TaskError> {
        if let Some(results) = &results {
            check_count(self.incremental_name(), results.len(), firings.len())?;
        }
        if let Some(process) = &mut self.functions.process {
            let contents: Vec<WindowContents> = firings
                .iter()
                .enumerate()
                .map(|(i, f)| WindowContents {
                    key: f.key(keys).map(<[u8]>::to_vec),
                    window: f.window,
                    elements: match &results {
                        Some(r) => {
                            let mut one = Batch::new();
                            let result = r.get(i);
                            one.push_with_key(&Record { timestamp: f.window.max_timestamp(), ..result }, f.key(keys));
                            one
                        }
                        None => f.elements.clone(),
                    },
                })
                .collect();
            let mut outputs = Outputs::default();
            process.process_windows(&contents, &mut outputs).map_err(user_err)?;
            out.emit(outputs.main);
            for (tag, batch) in outputs.side {
                out.emit_side(&tag, batch);
            }
            return Ok(());
        }
        let Some(results) = results else { return Ok(()) };
        let batch = out.records();
        let mut value = Vec::new();
        for (firing, result) in firings.iter().zip(results.iter()) {
            format_result(&self.cfg.format, firing.key(keys), &firing.window, result.value, &mut value);
            batch.push_record(&Record {
                timestamp: firing.window.max_timestamp(),
                key: firing.key(keys),
                value: &value,
                headers: result.headers,
            });
        }
        Ok(())
    }

    fn results_from_parts(&mut self, firings: &[Firing], keys: &[u8]) -> Result<Option<Batch>, TaskError> {
        let reduce = self.reduces();
        let mut accs = Batch::new();
        let mut others = Batch::new();
        let mut targets = Vec::new();
        let mut fired = std::mem::take(&mut self.fired_parts);
        for (i, firing) in firings.iter().enumerate() {
            for (j, index) in firing.parts.clone().enumerate() {
                let part = fired.get(index).value;
                let target = if j == 0 { &mut accs } else { &mut others };
                if reduce {
                    let record = decode_element(part, firing.key(keys))
                        .ok_or_else(|| TaskError::internal("a stored window element is corrupt"))?;
                    target.push_record(&record);
                } else {
                    target.push(0, None, part);
                }
                if j > 0 {
                    targets.push(i as u32);
                }
            }
        }
        fired.clear();
        self.fired_parts = fired;
        let merged = if others.is_empty() {
            accs
        } else {
            let expected = accs.len();
            let merged = match &mut self.functions.incremental {
                Some(Incremental::Aggregate(f)) => f.merge(&accs, &others, &targets),
                Some(Incremental::Reduce(f)) => f.reduce(&accs, &others, &targets),
                None => return Ok(None),
            }
            .map_err(user_err)?;
            check_count(self.incremental_name(), merged.len(), expected)?;
            merged
        };
        match &mut self.functions.incremental {
            Some(Incremental::Aggregate(f)) => f.get_result(&merged).map(Some).map_err(user_err),
            _ => Ok(Some(merged)),
        }
    }

    fn results_from_elements(&mut self, firings: &[Firing], keys: &[u8]) -> Result<Option<Batch>, TaskError> {
        let initial = match &self.functions.incremental {
            Some(Incremental::Aggregate(_)) => Some(self.initial_accumulator()?),
            _ => None,
        };
        match &mut self.functions.incremental {
            None => Ok(None),
            Some(Incremental::Aggregate(f)) => {
                let mut accs = Batch::new();
                let mut inputs = Batch::new();
                let mut targets = Vec::new();
                for (i, firing) in firings.iter().enumerate() {
                    accs.push(0, None, initial.as_deref().unwrap_or_default());
                    for record in firing.elements.iter() {
                        inputs.push_record(&record);
                        targets.push(i as u32);
                    }
                }
                let accs = if inputs.is_empty() { accs } else { f.add(&accs, &inputs, &targets).map_err(user_err)? };
                check_count("aggregate", accs.len(), firings.len())?;
                f.get_result(&accs).map(Some).map_err(user_err)
            }
            Some(Incremental::Reduce(f)) => {
                let mut accs = Batch::new();
                let mut inputs = Batch::new();
                let mut targets = Vec::new();
                for (i, firing) in firings.iter().enumerate() {
                    let mut records = firing.elements.iter();
                    match records.next() {
                        Some(first) => accs.push_record(&first),
                        None => accs.push(firing.window.max_timestamp(), firing.key(keys), b""),
                    }
                    for record in records {
                        inputs.push_record(&record);
                        targets.push(i as u32);
                    }
                }
                let accs =
                    if inputs.is_empty() { accs } else { f.reduce(&accs, &inputs, &targets).map_err(user_err)? };
                Ok(Some(accs))
            }
        }
    }
}

fn format_result(format: &ResultFormat, key: Option<&[u8]>, window: &Window, result: &[u8], out: &mut Vec<u8>) {
    out.clear();
    match format {
        ResultFormat::Raw => out.extend_from_slice(result),
        ResultFormat::Windowed => {
            let (start, end) = window.bounds();
            out.extend_from_slice(&start.to_le_bytes());
            out.extend_from_slice(&end.to_le_bytes());
            out.extend_from_slice(result);
        }
        ResultFormat::Json { name } => {
            let mut json = String::from("{");
            if let Some(key) = key {
                let key = serde_json::Value::String(String::from_utf8_lossy(key).into_owned());
                json.push_str(&format!("\"key\":{key},"));
            }
            if let Window::Time { start, end } = *window {
                json.push_str(&format!("\"window_start\":{start},\"window_end\":{end},"));
            }
            let name = serde_json::Value::String(name.clone());
            json.push_str(&format!("{name}:{}}}", String::from_utf8_lossy(result)));
            out.extend_from_slice(json.as_bytes());
        }
    }
}
