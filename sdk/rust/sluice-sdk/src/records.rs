//! Borrowed views of the host's records and batches, and the writer for output and rejects.
//! Every view borrows from the hook call it was handed to, so none can outlive it.
use crate::{sys, Error, Result};
use std::marker::PhantomData;

/// # Safety
/// `b` points to `len` bytes valid for `'a`, or `ptr` is NULL.
unsafe fn bytes<'a>(b: &sys::sluice_bytes) -> Option<&'a [u8]> {
    if b.ptr.is_null() {
        None
    } else {
        Some(std::slice::from_raw_parts(b.ptr, b.len))
    }
}

fn raw_bytes(b: Option<&[u8]>) -> sys::sluice_bytes {
    match b {
        Some(s) => sys::sluice_bytes {
            ptr: s.as_ptr(),
            len: s.len(),
        },
        None => sys::sluice_bytes {
            ptr: std::ptr::null(),
            len: 0,
        },
    }
}

/// One input record: a view into host memory, valid for the call only.
#[derive(Clone, Copy)]
pub struct Record<'a> {
    raw: &'a sys::sluice_record,
}

impl<'a> Record<'a> {
    /// The key; `None` for a null key.
    pub fn key(&self) -> Option<&'a [u8]> {
        // SAFETY: the host keeps the bytes valid during the call, which 'a cannot outlive.
        unsafe { bytes(&self.raw.key) }
    }
    /// The value; `None` for a tombstone.
    pub fn value(&self) -> Option<&'a [u8]> {
        // SAFETY: as in key().
        unsafe { bytes(&self.raw.value) }
    }
    /// The value as UTF-8 text; `None` for a tombstone or bytes that are not UTF-8.
    pub fn value_str(&self) -> Option<&'a str> {
        self.value().and_then(|v| std::str::from_utf8(v).ok())
    }
    pub fn topic(&self) -> &'a [u8] {
        // SAFETY: as in key().
        unsafe { bytes(&self.raw.topic) }.unwrap_or(&[])
    }
    /// The headers as (key, value) pairs.
    pub fn headers(&self) -> impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)> + 'a {
        let headers: &'a [sys::sluice_header] = if self.raw.headers.is_null() {
            &[]
        } else {
            // SAFETY: the host's header array of header_count entries, valid for the call.
            unsafe { std::slice::from_raw_parts(self.raw.headers, self.raw.header_count) }
        };
        // SAFETY: as in key().
        headers
            .iter()
            .map(|h| unsafe { (bytes(&h.key).unwrap_or(&[]), bytes(&h.value)) })
    }
    pub fn partition(&self) -> i32 {
        self.raw.partition
    }
    pub fn offset(&self) -> i64 {
        self.raw.offset
    }
    pub fn timestamp_ms(&self) -> i64 {
        self.raw.timestamp_ms
    }
}

/// A batch handed to a transform or sink, valid for the call only.
#[derive(Clone, Copy)]
pub struct Batch<'a> {
    records: &'a [sys::sluice_record],
}

impl<'a> Batch<'a> {
    /// # Safety
    /// `raw` is the batch of the current call.
    pub(crate) unsafe fn from_raw(raw: &'a sys::sluice_batch) -> Self {
        let records = if raw.records.is_null() || raw.count == 0 {
            &[][..]
        } else {
            std::slice::from_raw_parts(raw.records, raw.count)
        };
        Batch { records }
    }
    pub fn len(&self) -> usize {
        self.records.len()
    }
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
    pub fn get(&self, index: usize) -> Option<Record<'a>> {
        self.records.get(index).map(|raw| Record { raw })
    }
    /// The records in order; a record's position in the batch is its input index.
    pub fn iter(&self) -> impl Iterator<Item = Record<'a>> + 'a {
        self.records.iter().map(|raw| Record { raw })
    }
}

/// A record to append: built new (sources) or from an input record (transforms). The host
/// copies it and its bytes during `append`, so it may borrow local buffers.
#[derive(Clone, Copy)]
pub struct OutRecord<'a> {
    raw: sys::sluice_record,
    _bytes: PhantomData<&'a [u8]>,
}

impl<'a> OutRecord<'a> {
    /// A record with this value, no key, no topic, position (0, 0) and no timestamp.
    pub fn new(value: Option<&'a [u8]>) -> Self {
        let none = raw_bytes(None);
        OutRecord {
            raw: sys::sluice_record {
                struct_size: std::mem::size_of::<sys::sluice_record>() as u32,
                key: none,
                value: raw_bytes(value),
                topic: none,
                headers: std::ptr::null(),
                header_count: 0,
                partition: 0,
                offset: 0,
                timestamp_ms: 0,
            },
            _bytes: PhantomData,
        }
    }
    /// A copy of an input record (key, value, topic, headers, position, timestamp).
    pub fn from_record(record: &Record<'a>) -> Self {
        OutRecord {
            raw: *record.raw,
            _bytes: PhantomData,
        }
    }
    pub fn value(mut self, value: Option<&'a [u8]>) -> Self {
        self.raw.value = raw_bytes(value);
        self
    }
    pub fn key(mut self, key: Option<&'a [u8]>) -> Self {
        self.raw.key = raw_bytes(key);
        self
    }
    pub fn topic(mut self, topic: &'a [u8]) -> Self {
        self.raw.topic = raw_bytes(Some(topic));
        self
    }
    /// The record's position in its source, which `commit` hands back.
    pub fn position(mut self, partition: i32, offset: i64) -> Self {
        self.raw.partition = partition;
        self.raw.offset = offset;
        self
    }
    pub fn timestamp_ms(mut self, timestamp_ms: i64) -> Self {
        self.raw.timestamp_ms = timestamp_ms;
        self
    }
    /// The C record, e.g. to hand to a test's fake host.
    pub fn as_raw(&self) -> &sys::sluice_record {
        &self.raw
    }
}

/// A source position the host is done with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position<'a> {
    pub topic: &'a [u8],
    pub partition: i32,
    /// This record and every earlier one of the partition are done.
    pub offset: i64,
}

impl<'a> Position<'a> {
    pub(crate) fn from_raw(raw: &'a sys::sluice_position) -> Self {
        // SAFETY: the host's bytes, valid during the commit call.
        let topic = unsafe { bytes(&raw.topic) }.unwrap_or(&[]);
        Position {
            topic,
            partition: raw.partition,
            offset: raw.offset,
        }
    }
}

/// Key + value + header bytes of a record, as the host counts them against a poll's max_bytes.
fn record_bytes(record: &sys::sluice_record) -> u64 {
    let headers = if record.headers.is_null() {
        &[][..]
    } else {
        // SAFETY: the record's header array, valid while the record is.
        unsafe { std::slice::from_raw_parts(record.headers, record.header_count) }
    };
    let header_bytes: usize = headers.iter().map(|h| h.key.len + h.value.len).sum();
    (record.key.len + record.value.len + header_bytes) as u64
}

/// The host-owned output of a call: append records, reject input records.
pub struct Writer<'a> {
    raw: &'a mut sys::sluice_writer,
    bytes: u64,
}

impl<'a> Writer<'a> {
    /// # Safety
    /// `raw` is the writer of the current call.
    pub(crate) unsafe fn from_raw(raw: &'a mut sys::sluice_writer) -> Self {
        Writer { raw, bytes: 0 }
    }

    /// Bytes of key + value + headers appended through this writer so far (what a poll's
    /// `PollLimits::max_bytes` bounds).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    fn append_raw(&mut self, index: usize, record: &sys::sluice_record) -> Result<()> {
        let append = self
            .raw
            .append
            .ok_or_else(|| Error::failed("the host gave no append"))?;
        // SAFETY: the host copies the record and its bytes before returning.
        match unsafe { append(self.raw.host_ctx, index, record) } {
            sys::SLUICE_OK => {
                self.bytes += record_bytes(record);
                Ok(())
            }
            sys::SLUICE_RETRY => Err(Error::Retry("the host refused the record for now".into())),
            _ => Err(Error::failed("the host refused the record")),
        }
    }

    /// Appends `record` as an output of input record `index` (a transform must give it, so acks
    /// stay exact).
    pub fn append(&mut self, index: usize, record: &OutRecord<'_>) -> Result<()> {
        self.append_raw(index, &record.raw)
    }
    /// Appends a new record from a source (no input index).
    pub fn push(&mut self, record: &OutRecord<'_>) -> Result<()> {
        self.append_raw(usize::MAX, &record.raw)
    }
    /// Passes input record `index` on unchanged.
    pub fn forward(&mut self, index: usize, record: &Record<'_>) -> Result<()> {
        self.append_raw(index, record.raw)
    }
    /// Rejects input record `index` (the pipeline's error policy decides); the rest goes on.
    pub fn reject(&mut self, index: usize, reason: &str) {
        self.reject_with(index, sys::SLUICE_ERROR, reason)
    }
    /// Rejects input record `index` as transient: a sink's record is put again alone.
    pub fn reject_retry(&mut self, index: usize, reason: &str) {
        self.reject_with(index, sys::SLUICE_RETRY, reason)
    }
    pub(crate) fn reject_with(&mut self, index: usize, status: sys::sluice_status, reason: &str) {
        if let Some(reject) = self.raw.reject {
            // SAFETY: the host copies the message before returning.
            unsafe {
                reject(
                    self.raw.host_ctx,
                    index,
                    status,
                    reason.as_ptr().cast(),
                    reason.len(),
                )
            }
        }
    }
}

/// The output of one input record of a transform: what `Transform::process` writes to.
pub struct RecordOutput<'w, 'a> {
    writer: &'w mut Writer<'a>,
    index: usize,
}

impl<'w, 'a> RecordOutput<'w, 'a> {
    pub(crate) fn new(writer: &'w mut Writer<'a>, index: usize) -> Self {
        RecordOutput { writer, index }
    }
    /// The input record's index in its batch.
    pub fn index(&self) -> usize {
        self.index
    }
    /// Emits one output record derived from this input record.
    pub fn emit(&mut self, record: &OutRecord<'_>) -> Result<()> {
        self.writer.append(self.index, record)
    }
    /// Passes this input record on unchanged.
    pub fn forward(&mut self, record: &Record<'_>) -> Result<()> {
        self.writer.forward(self.index, record)
    }
    /// Rejects this input record; returning an `Err` from `process` does the same.
    pub fn reject(&mut self, reason: &str) {
        self.writer.reject(self.index, reason)
    }
}
