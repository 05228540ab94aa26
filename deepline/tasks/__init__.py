"""deepline.tasks"""
