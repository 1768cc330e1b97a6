//! A backend that stops answering once its operation is cancelled: every
//! read and write then fails at once. rustic has no way to stop a backup
//! or a restore, and a panic from its progress callback ends only the job
//! that called it (rayon runs the queued ones to the end), so a cancelled
//! restore would otherwise read and write the whole snapshot before it
//! stops. With the repository answering errors, the remaining jobs fail
//! in microseconds, and nothing more is written.

use std::sync::Arc;

use bytes::Bytes;
use rustic_core::{
    BytesList, ErrorKind, FileType, Id, ReadBackend, RusticError, RusticResult, WriteBackend,
};

use crate::backup::Progress;

/// The error every call gives once cancelled (the panic hook knows it).
pub const CANCELLED: &str = "berth: the operation was cancelled";

/// `inner`, until `progress` is cancelled.
#[derive(Debug)]
pub struct Cancellable {
    inner: Arc<dyn WriteBackend>,
    progress: Arc<Progress>,
}

impl Cancellable {
    pub fn new(inner: Arc<dyn WriteBackend>, progress: Arc<Progress>) -> Self {
        Cancellable { inner, progress }
    }

    fn go_on(&self) -> RusticResult<()> {
        match self.progress.is_cancelled() {
            true => Err(RusticError::new(ErrorKind::Backend, CANCELLED)),
            false => Ok(()),
        }
    }
}

impl ReadBackend for Cancellable {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn list_with_size(&self, tpe: FileType) -> RusticResult<Vec<(Id, u32)>> {
        self.go_on()?;
        self.inner.list_with_size(tpe)
    }

    fn read_full(&self, tpe: FileType, id: &Id) -> RusticResult<Bytes> {
        self.go_on()?;
        self.inner.read_full(tpe, id)
    }

    fn read_partial(
        &self,
        tpe: FileType,
        id: &Id,
        cacheable: bool,
        offset: u32,
        length: u32,
    ) -> RusticResult<Bytes> {
        self.go_on()?;
        self.inner.read_partial(tpe, id, cacheable, offset, length)
    }

    fn warmup_path(&self, tpe: FileType, id: &Id) -> String {
        self.inner.warmup_path(tpe, id)
    }
}

impl WriteBackend for Cancellable {
    fn create(&self) -> RusticResult<()> {
        self.go_on()?;
        self.inner.create()
    }

    fn write_bytes(
        &self,
        tpe: FileType,
        id: &Id,
        cacheable: bool,
        content: BytesList,
    ) -> RusticResult<()> {
        self.go_on()?;
        self.inner.write_bytes(tpe, id, cacheable, content)
    }

    fn remove(&self, tpe: FileType, id: &Id, cacheable: bool) -> RusticResult<()> {
        self.go_on()?;
        self.inner.remove(tpe, id, cacheable)
    }
}
