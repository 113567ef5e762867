//! JSON Lines: one compact object per line, `\n` after each, flushed per record so a reader
//! (`| jq -c`) sees results live.

use std::io::{self, Write};

use serde::Serialize;

use super::{Meta, Sink, StepRecord, Summary};

pub struct JsonLines<W: Write> {
    out: W,
    /// Reused for every record, so writing does not allocate once warmed up.
    buf: Vec<u8>,
}

impl<W: Write> JsonLines<W> {
    pub fn new(out: W) -> Self {
        JsonLines { out, buf: Vec::with_capacity(1024) }
    }

    pub fn into_inner(self) -> W {
        self.out
    }

    /// Write one record as one line and flush it.
    pub fn write<T: Serialize>(&mut self, record: &T) -> io::Result<()> {
        self.buf.clear();
        serde_json::to_writer(&mut self.buf, record).map_err(io::Error::other)?;
        self.buf.push(b'\n');
        self.out.write_all(&self.buf)?;
        self.out.flush()
    }
}

impl<W: Write> Sink for JsonLines<W> {
    fn meta(&mut self, meta: &Meta) -> io::Result<()> {
        self.write(meta)
    }

    fn step(&mut self, rec: &StepRecord<'_>) -> io::Result<()> {
        self.write(rec)
    }

    fn summary(&mut self, summary: &Summary) -> io::Result<()> {
        self.write(summary)
    }
}
