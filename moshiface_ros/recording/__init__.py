"""Session recording: rosbag2 (MCAP) files with the package's own message types."""
