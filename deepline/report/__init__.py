"""deepline.report"""
