"""The embedded runner: the whole pipeline in one process, without ROS."""
