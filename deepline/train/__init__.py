"""deepline.train"""
