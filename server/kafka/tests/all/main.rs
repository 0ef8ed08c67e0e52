//! The Kafka connectors against the real Apache Kafka broker (`tests/services/kafka.sh`), driven through the
//! engine's `Source` and `Operator` traits as a task would call them.

mod broker;
mod deploy;
mod job;
mod sink;
mod source;
