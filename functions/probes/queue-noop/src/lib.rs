//! `queue-noop`: a queue handler that does nothing, so the queue benchmark
//! measures the broker and the trigger, not the handler.

use nimbus_sdk::queue::Message;
use nimbus_sdk::queue_handler;

#[queue_handler]
fn handle(_message: Message) {}
