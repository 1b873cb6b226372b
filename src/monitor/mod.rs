//! The udev + mdevctl source and the node-device table (layer 3).

pub mod device;
pub mod naming;
pub mod table;
