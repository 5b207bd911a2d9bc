"""ROS 2 nodes: thin rclpy wrappers around the core. Only this subpackage imports rclpy."""
