//! Supervision: the lifecycle state machine (`fsm`), the restart policy (`restart`), and the
//! actor that owns all service state and performs what the state machine decides.

pub mod fsm;
pub mod restart;
