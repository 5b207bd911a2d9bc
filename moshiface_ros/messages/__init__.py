"""Core message objects and their conversion to and from ROS messages (rclpy or rosbags)."""
