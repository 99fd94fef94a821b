from setuptools import find_packages, setup

package_name = 'craik_perception'

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    package_data={package_name: ['fastdds_large_data.xml']},
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml', 'README.md']),
    ],
    install_requires=['setuptools'],
    zip_safe=False,
    maintainer='craik maintainers',
    maintainer_email='maintainers@craik-robotics.org',
    description='RealSense camera node (live or recording) and image conversion helpers.',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'realsense = craik_perception.realsense_node:main',
        ],
    },
)
