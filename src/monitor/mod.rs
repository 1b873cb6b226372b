//! The udev + mdevctl source and the node-device table (layer 3).
