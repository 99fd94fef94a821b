from setuptools import find_packages, setup

package_name = 'craik_franka'

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    package_data={package_name: ['data/fr3.urdf', 'data/NOTICE']},
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml', 'README.md']),
    ],
    install_requires=['setuptools'],
    zip_safe=False,
    maintainer='craik maintainers',
    maintainer_email='maintainers@craik-robotics.org',
    description='Franka FR3 controller (franky) with a safety envelope; franka_controller node.',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'franka_controller = craik_franka.franka_controller_node:main',
        ],
    },
)
