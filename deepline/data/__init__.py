"""deepline.data"""
