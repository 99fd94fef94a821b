from setuptools import find_packages, setup

package_name = 'craik_bringup'

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
    ],
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='craik maintainers',
    maintainer_email='maintainers@craik-robotics.org',
    description='The craik command line and the node graph without ros2 launch (graph.py).',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            # `craik` lands in install/craik_bringup/bin, which install/setup.bash puts on PATH.
            'craik = craik_bringup.cli:main',
        ],
    },
)
