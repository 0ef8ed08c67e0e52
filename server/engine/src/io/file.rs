//! JSON-lines files: one record per line in, one value per line out.

use super::{Source, SourcePoll};
use crate::error::TaskError;
use crate::operator::{OpContext, Operator};
use eddy_codec::Batch;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};

/// Reads a file line by line; each non-empty line is a record's value.
pub struct FileSource {
    path: String,
    reader: BufReader<File>,
    line: Vec<u8>,
}

impl FileSource {
    /// Opens `path`.
    pub fn open(path: &str) -> Result<FileSource, TaskError> {
        let file = File::open(path).map_err(|e| TaskError::external(format!("cannot open input file {path}: {e}")))?;
        Ok(FileSource { path: path.to_string(), reader: BufReader::with_capacity(1 << 16, file), line: Vec::new() })
    }
}

impl Source for FileSource {
    fn uses_arrival_time(&self) -> bool {
        true
    }

    fn poll(&mut self, batch: &mut Batch, max: usize) -> Result<SourcePoll, TaskError> {
        let before = batch.len();
        while batch.len() - before < max {
            self.line.clear();
            let read = self
                .reader
                .read_until(b'\n', &mut self.line)
                .map_err(|e| TaskError::external(format!("cannot read {}: {e}", self.path)))?;
            if read == 0 {
                break;
            }
            let text = self.line.trim_ascii();
            if !text.is_empty() {
                batch.push(0, None, text);
            }
        }
        Ok(if batch.len() == before { SourcePoll::Finished } else { SourcePoll::Records { split: 0 } })
    }
}

/// Writes each record's value as a line.
pub struct FileSink {
    path: String,
    writer: BufWriter<File>,
}

impl FileSink {
    /// Creates (or truncates) `path`, with its parent folders.
    pub fn create(path: &str) -> Result<FileSink, TaskError> {
        let fail = |e: std::io::Error| TaskError::external(format!("cannot create output file {path}: {e}"));
        if let Some(parent) = std::path::Path::new(path).parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(fail)?;
        }
        let file = File::create(path).map_err(fail)?;
        Ok(FileSink { path: path.to_string(), writer: BufWriter::with_capacity(1 << 16, file) })
    }
}

impl Operator for FileSink {
    fn process(&mut self, _: usize, batch: Batch, _: &mut OpContext<'_>) -> Result<(), TaskError> {
        let fail = |e: std::io::Error| TaskError::external(format!("cannot write {}: {e}", self.path));
        for record in batch.iter() {
            self.writer.write_all(record.value).map_err(fail)?;
            self.writer.write_all(b"\n").map_err(fail)?;
        }
        self.writer.flush().map_err(fail)
    }

    fn finish(&mut self, _: &mut OpContext<'_>) -> Result<(), TaskError> {
        self.writer.flush().map_err(|e| TaskError::external(format!("cannot write {}: {e}", self.path)))
    }
}
